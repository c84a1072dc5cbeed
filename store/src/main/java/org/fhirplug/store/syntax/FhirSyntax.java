package org.fhirplug.store.syntax;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.parser.DataFormatException;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.parser.IParserErrorHandler;
import ca.uhn.fhir.parser.json.BaseJsonLikeValue;
import java.util.ArrayList;
import java.util.List;
import org.hl7.fhir.instance.model.api.IBaseResource;

/**
 * FHIR XML to FHIR JSON and back, by HAPI's own parsers: no mapping of ours between the two.
 *
 * <p>HAPI's parsers are lenient by default: an element they do not know is logged and dropped.
 * Here every problem that would lose content (an unknown element or attribute, a value its type
 * cannot hold, a second copy of a single element, an extension with both a value and extensions)
 * refuses the document instead, pointing at the element; problems that lose nothing (a missing
 * required element, a reference that resolves nowhere) are left to validation. The encoders keep
 * what HAPI would otherwise rewrite: versions in references, and the ids of resources in a Bundle
 * (HAPI would replace them with the entry's fullUrl).
 */
public final class FhirSyntax {

	private static final int MAX_ISSUES = 20;

	private final FhirContext context;

	public FhirSyntax(FhirContext context) {
		this.context = context;
	}

	/** The JSON of a FHIR XML document. */
	public String xmlToJson(String xml) throws SyntaxProblem {
		XmlScan scan = XmlScan.of(xml);
		Collector problems = new Collector(scan);
		IBaseResource resource = parse(faithful(context.newXmlParser()), problems, xml, scan);
		return faithful(context.newJsonParser()).encodeResourceToString(resource);
	}

	/** The XML of a FHIR JSON document. */
	public String jsonToXml(String json) throws SyntaxProblem {
		Collector problems = new Collector(null);
		IBaseResource resource = parse(faithful(context.newJsonParser()), problems, json, null);
		return faithful(context.newXmlParser()).encodeResourceToString(resource);
	}

	private static IBaseResource parse(IParser parser, Collector problems, String text, XmlScan scan)
			throws SyntaxProblem {
		parser.setParserErrorHandler(problems);
		IBaseResource resource;
		try {
			resource = parser.parseResource(text);
		} catch (DataFormatException e) {
			if (!problems.issues.isEmpty()) {
				throw new SyntaxProblem(422, problems.issues);
			}
			String root = scan == null ? null : scan.rootName();
			throw SyntaxProblem.syntax(
					"The body is not a FHIR resource HAPI can read: " + withoutCode(e.getMessage()), root, 0, 0);
		}
		if (!problems.issues.isEmpty()) {
			throw new SyntaxProblem(422, problems.issues);
		}
		return resource;
	}

	private static IParser faithful(IParser parser) {
		return parser.setPrettyPrint(false)
				.setStripVersionsFromReferences(false)
				.setOverrideResourceIdWithBundleEntryFullUrl(false)
				.setOmitResourceId(false)
				.setSuppressNarratives(false);
	}

	private static String withoutCode(String message) {
		return message == null ? "" : message.replaceFirst("^HAPI-\\d+: ", "");
	}

	/** Collects what the parser reports; each problem that would lose content becomes an issue. */
	private static final class Collector implements IParserErrorHandler {
		final List<SyntaxProblem.Issue> issues = new ArrayList<>();
		private final XmlScan scan;

		Collector(XmlScan scan) {
			this.scan = scan;
		}

		private void add(String code, String text, XmlScan.Element at) {
			if (issues.size() >= MAX_ISSUES) {
				return;
			}
			issues.add(new SyntaxProblem.Issue(code, text, at == null ? null : at.path(),
					at == null ? 0 : at.line(), at == null ? 0 : at.column()));
		}

		private static String parentOf(IParseLocation location) {
			return location == null ? null : location.getParentElementName();
		}

		private XmlScan.Element element(IParseLocation location, String name) {
			return scan == null ? null : scan.find(parentOf(location), name);
		}

		@Override
		public void unknownElement(IParseLocation location, String name) {
			XmlScan.Element at = element(location, name);
			add("structure", "Unknown element '" + name + "'" + within(location)
					+ ": it is not part of FHIR R4 here and would be lost", at);
		}

		@Override
		public void unknownAttribute(IParseLocation location, String name) {
			XmlScan.Element at = scan == null ? null : scan.withAttribute(name, null);
			add("structure", "Unknown attribute '" + name + "'" + within(location)
					+ ": it is not part of FHIR R4 here and would be lost", at);
		}

		@Override
		public void unexpectedRepeatingElement(IParseLocation location, String name) {
			XmlScan.Element at = scan == null ? null : scan.secondOf(name);
			add("structure", "Element '" + name + "'" + within(location)
					+ " appears more than once but holds a single value: all but one would be lost", at);
		}

		@Override
		public void invalidValue(IParseLocation location, String value, String error) {
			XmlScan.Element at = scan == null ? null : scan.withAttribute("value", value);
			add("value", "The value '" + value + "'" + within(location) + " is not valid here: "
					+ withoutCode(error), at);
		}

		@Override
		public void extensionContainsValueAndNestedExtensions(IParseLocation location) {
			add("structure", "An extension" + within(location)
					+ " has both a value and nested extensions (FHIR rule ext-1)", null);
		}

		@Override
		public void incorrectJsonType(IParseLocation location, String name, BaseJsonLikeValue.ValueType expected,
				BaseJsonLikeValue.ScalarType expectedScalar, BaseJsonLikeValue.ValueType found,
				BaseJsonLikeValue.ScalarType foundScalar) {
			add("structure", "Element '" + name + "'" + within(location) + " has the JSON type " + found
					+ ", not " + expected, null);
		}

		@Override
		public void containedResourceWithNoId(IParseLocation location) {
			// HAPI can keep only contained resources it can refer to
			add("structure", "A contained resource" + within(location) + " has no id", null);
		}

		// no content is lost: validation reports these

		@Override
		public void missingRequiredElement(IParseLocation location, String name) {}

		@Override
		public void unknownReference(IParseLocation location, String reference) {}

		@Override
		public void invalidInternalReference(IParseLocation location, String reference) {}

		private static String within(IParseLocation location) {
			String parent = parentOf(location);
			return parent == null ? "" : " in '" + parent + "'";
		}
	}
}
