package org.fhirplug.store.syntax;

/** A {@link SyntaxProblem} as a FHIR OperationOutcome (JSON), written by hand: it has no parser to fail. */
final class Outcomes {

	private Outcomes() {}

	static String of(SyntaxProblem problem) {
		StringBuilder out = new StringBuilder("{\"resourceType\":\"OperationOutcome\",\"issue\":[");
		boolean first = true;
		for (SyntaxProblem.Issue issue : problem.issues()) {
			out.append(first ? "" : ",").append("{\"severity\":\"error\",\"code\":").append(quote(issue.code()))
					.append(",\"diagnostics\":").append(quote(issue.diagnostics()));
			if (issue.expression() != null) {
				out.append(",\"expression\":[").append(quote(issue.expression())).append("]");
			}
			if (issue.line() > 0) {
				// R4's location: where in the document as sent (HAPI's validator writes Line[n] Col[m] too)
				out.append(",\"location\":[").append(quote("Line[" + issue.line() + "] Col[" + issue.column() + "]"))
						.append("]");
			}
			out.append("}");
			first = false;
		}
		return out.append("]}").toString();
	}

	static String quote(String s) {
		StringBuilder out = new StringBuilder("\"");
		for (int i = 0; i < s.length(); i++) {
			char c = s.charAt(i);
			switch (c) {
				case '"' -> out.append("\\\"");
				case '\\' -> out.append("\\\\");
				case '\n' -> out.append("\\n");
				case '\r' -> out.append("\\r");
				case '\t' -> out.append("\\t");
				default -> {
					if (c < 0x20 || Character.isSurrogate(c)) {
						out.append(String.format("\\u%04x", (int) c));
					} else {
						out.append(c);
					}
				}
			}
		}
		return out.append('"').toString();
	}
}
