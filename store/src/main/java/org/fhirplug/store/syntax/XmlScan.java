package org.fhirplug.store.syntax;

import java.io.StringReader;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Iterator;
import javax.xml.stream.Location;
import javax.xml.stream.XMLEventReader;
import javax.xml.stream.XMLStreamConstants;
import javax.xml.stream.XMLStreamException;
import javax.xml.stream.events.Attribute;
import javax.xml.stream.events.StartElement;
import javax.xml.stream.events.XMLEvent;
import ca.uhn.fhir.util.XmlUtil;

/**
 * One pass over a FHIR XML document before HAPI parses it: is it well-formed, free of any DTD
 * (FHIR forbids them, http://hl7.org/fhir/R4/xml.html, and refusing them closes the door on
 * external entities and entity expansion bombs), no deeper than {@link #MAX_DEPTH}, rooted in the
 * FHIR namespace? Its elements are kept with their line, column and FHIRPath, so that a problem
 * HAPI's parser reports by element name can be pointed at in the caller's own document.
 */
final class XmlScan {

	static final String FHIR_NS = "http://hl7.org/fhir";
	static final String XHTML_NS = "http://www.w3.org/1999/xhtml";
	/** Nesting of elements; a FHIR resource needs a few dozen at most (the JSON side allows 100 too). */
	static final int MAX_DEPTH = 100;

	/** An element as it stands in the document. */
	record Element(String name, String parent, String path, int line, int column, Map<String, String> attributes) {}

	private final List<Element> elements = new ArrayList<>();
	private String rootName;

	private XmlScan() {}

	static XmlScan of(String text) throws SyntaxProblem {
		XmlScan scan = new XmlScan();
		scan.walk(text);
		return scan;
	}

	String rootName() {
		return rootName;
	}

	List<Element> elements() {
		return elements;
	}

	/** The first element named {@code name} whose parent is named {@code parent} (either may be null: any). */
	Element find(String parent, String name) {
		for (Element e : elements) {
			if ((name == null || name.equals(e.name())) && (parent == null || parent.equals(e.parent()))) {
				return e;
			}
		}
		return parent != null ? find(null, name) : null;
	}

	/** The second element named {@code name} under one parent element: the copy a single element may not have. */
	Element secondOf(String name) {
		Map<String, Integer> seen = new HashMap<>();
		for (Element e : elements) {
			if (name.equals(e.name())) {
				String key = e.path().replaceAll("\\[\\d+\\]$", "");
				if (seen.merge(key, 1, Integer::sum) == 2) {
					return e;
				}
			}
		}
		return find(null, name);
	}

	/** The first element with an attribute named {@code attribute} (and, if given, that value). */
	Element withAttribute(String attribute, String value) {
		for (Element e : elements) {
			String v = e.attributes().get(attribute);
			if (v != null && (value == null || value.equals(v))) {
				return e;
			}
		}
		return null;
	}

	private void walk(String text) throws SyntaxProblem {
		// before any parser sees it: FHIR XML has no DTD, and a DTD is how external entities and
		// entity expansion bombs get in
		int dtd = text.indexOf("<!DOCTYPE");
		dtd = dtd >= 0 ? dtd : text.indexOf("<!ENTITY");
		if (dtd >= 0) {
			int line = 1 + (int) text.substring(0, dtd).chars().filter(c -> c == '\n').count();
			int column = dtd - text.lastIndexOf('\n', dtd - 1);
			throw SyntaxProblem.syntax("FHIR XML may not hold a document type declaration (DTD)", null, line, column);
		}
		Deque<Frame> open = new ArrayDeque<>();
		XMLEventReader r = null;
		try {
			// HAPI's own reader settings (the HTML entities a narrative may use, such as &nbsp;, are known)
			r = XmlUtil.createXmlReader(new StringReader(text));
			while (r.hasNext()) {
				XMLEvent event = r.nextEvent();
				if (event.getEventType() == XMLStreamConstants.DTD) {
					Location at = event.getLocation();
					throw SyntaxProblem.syntax("FHIR XML may not hold a document type declaration (DTD)",
							pathOf(open), at.getLineNumber(), at.getColumnNumber());
				}
				if (event.isStartElement()) {
					start(event.asStartElement(), open);
				} else if (event.isEndElement()) {
					open.pop();
				}
			}
		} catch (XMLStreamException e) {
			throw notWellFormed(e, open);
		} catch (RuntimeException e) {
			// a parser reports some failures unchecked (an unknown entity, a bad character)
			Throwable cause = e.getCause() instanceof XMLStreamException x ? x : e;
			if (cause instanceof XMLStreamException x) {
				throw notWellFormed(x, open);
			}
			throw SyntaxProblem.syntax("The body is not well-formed XML: " + e.getMessage(), pathOf(open), 0, 0);
		} finally {
			if (r != null) {
				try {
					r.close();
				} catch (XMLStreamException ignored) {
					// nothing is held open on a string
				}
			}
		}
		if (rootName == null) {
			throw SyntaxProblem.syntax("The body holds no XML element", null, 1, 1);
		}
	}

	private void start(StartElement e, Deque<Frame> open) throws SyntaxProblem {
		Location at = e.getLocation();
		String name = e.getName().getLocalPart();
		String ns = e.getName().getNamespaceURI();
		Frame parent = open.peek();
		if (open.size() >= MAX_DEPTH) {
			throw SyntaxProblem.syntax("The XML is nested more than " + MAX_DEPTH + " elements deep",
					pathOf(open), at.getLineNumber(), at.getColumnNumber());
		}
		String path;
		if (parent == null) {
			if (!FHIR_NS.equals(ns)) {
				throw SyntaxProblem.syntax("The root element <" + name + "> is not in the FHIR namespace ("
						+ FHIR_NS + "): this is not FHIR XML", null, at.getLineNumber(), at.getColumnNumber());
			}
			rootName = name;
			path = name;
		} else if (parent.xhtml || XHTML_NS.equals(ns) || (!name.isEmpty() && Character.isUpperCase(name.charAt(0)))) {
			// inside a narrative the path stays at its div; a resource inside an element (Bundle
			// entry, contained) is that element's value in JSON: no step of its own
			path = parent.path;
		} else {
			int index = parent.children.merge(name, 1, Integer::sum) - 1;
			path = parent.path + "." + name + (index > 0 ? "[" + index + "]" : "");
		}
		Map<String, String> attributes = new HashMap<>();
		for (Iterator<Attribute> it = e.getAttributes(); it.hasNext(); ) {
			Attribute a = it.next();
			attributes.put(a.getName().getLocalPart(), a.getValue());
		}
		elements.add(new Element(name, parent == null ? null : parent.name, path, at.getLineNumber(),
				at.getColumnNumber(), attributes));
		open.push(new Frame(name, path, (parent != null && parent.xhtml) || XHTML_NS.equals(ns)));
	}

	private static SyntaxProblem notWellFormed(XMLStreamException e, Deque<Frame> open) {
		Location at = e.getLocation();
		String message = e.getMessage() == null ? "" : e.getMessage();
		// the parsers prefix their message with the location, which we report on its own
		int cut = message.indexOf("Message: ");
		message = cut >= 0 ? message.substring(cut + 9) : message.replaceFirst("(?s)^ParseError at \\[[^\\]]*\\]\\s*", "");
		message = message.replaceAll("(?s)\\s*at \\[row,col[^\\]]*\\]: \\[\\d+,\\d+\\]\\s*$", "").strip();
		return SyntaxProblem.syntax("The body is not well-formed XML: " + message, pathOf(open),
				at == null ? 0 : at.getLineNumber(), at == null ? 0 : at.getColumnNumber());
	}

	private static String pathOf(Deque<Frame> open) {
		Frame top = open.peek();
		return top == null ? null : top.path;
	}

	private static final class Frame {
		final String name;
		final String path;
		final boolean xhtml;
		final Map<String, Integer> children = new HashMap<>();

		Frame(String name, String path, boolean xhtml) {
			this.name = name;
			this.path = path;
			this.xhtml = xhtml;
		}
	}
}
