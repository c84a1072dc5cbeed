package org.fhirplug.store.syntax;

import java.util.List;

/**
 * Why a document could not be converted, with where in it (as the caller wrote it) each problem is.
 *
 * <p>{@code status} 400: the document is not well-formed XML (or JSON), or not a FHIR document at
 * all. {@code status} 422: it is well-formed, but holds content the FHIR model cannot hold (an
 * unknown element or attribute, a value of the wrong type, a second copy of a single element):
 * converting it would silently lose that content, so it is refused instead.
 */
public final class SyntaxProblem extends Exception {

	/** One problem: what, the FHIRPath of the element (may be null) and its line and column (0: unknown). */
	public record Issue(String code, String diagnostics, String expression, int line, int column) {}

	private final int status;
	private final List<Issue> issues;

	public SyntaxProblem(int status, List<Issue> issues) {
		super(issues.isEmpty() ? "unconvertible" : issues.get(0).diagnostics());
		this.status = status;
		this.issues = List.copyOf(issues);
	}

	public static SyntaxProblem syntax(String diagnostics, String expression, int line, int column) {
		return new SyntaxProblem(400, List.of(new Issue("structure", diagnostics, expression, line, column)));
	}

	public int status() {
		return status;
	}

	public List<Issue> issues() {
		return issues;
	}
}
