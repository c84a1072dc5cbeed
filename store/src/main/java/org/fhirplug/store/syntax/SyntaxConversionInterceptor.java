package org.fhirplug.store.syntax;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.Charset;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.IllegalCharsetNameException;
import java.nio.charset.StandardCharsets;
import java.nio.charset.UnsupportedCharsetException;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.fhirplug.store.tenancy.CallerAssertion;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code POST [base]/$fhirplug-convert}: a FHIR XML body answered as FHIR JSON, a FHIR JSON body as
 * FHIR XML, by HAPI's own parsers ({@link FhirSyntax}). The fhirplug proxy sends every XML body it
 * is given here first, so that its plugins read JSON, and nothing in the proxy maps XML itself.
 *
 * <p>It answers before HAPI reads the request at all (nothing is stored, searched or validated),
 * and only a request the proxy signed ({@link CallerAssertion}, role admin). A refusal is an
 * OperationOutcome in JSON: 400 when the body is not well-formed (or not FHIR), 422 when it holds
 * content FHIR cannot hold; each issue names the element (FHIRPath) and its line and column.
 * An interceptor, so that the official HAPI image loads it too ({@code custom-interceptor-classes}).
 */
@Interceptor
public class SyntaxConversionInterceptor {

	public static final String PATH = "/$fhirplug-convert";
	static final long MAX_BODY_BYTES = Long.getLong("fhirplug.convert.max_body_bytes", 64L * 1024 * 1024);
	private static final Logger LOG = LoggerFactory.getLogger(SyntaxConversionInterceptor.class);
	private static final Pattern CHARSET = Pattern.compile("(?i);\\s*charset\\s*=\\s*\"?([^\";\\s]+)");
	private static final Pattern DECLARED = Pattern.compile("^<\\?xml[^>]*encoding\\s*=\\s*[\"']([A-Za-z0-9._-]+)[\"']");

	private final FhirSyntax syntax;
	private final CallerAssertion assertion; // null: the store answers anyone (tenancy off, benchmarks)

	/** For the official HAPI image's {@code hapi.fhir.custom-interceptor-classes}. */
	public SyntaxConversionInterceptor() {
		this(FhirContext.forR4Cached(), CallerAssertion.fromEnvironment());
	}

	public SyntaxConversionInterceptor(FhirContext context, CallerAssertion assertion) {
		this.syntax = new FhirSyntax(context);
		this.assertion = assertion;
	}

	@Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_PROCESSED)
	public boolean convert(HttpServletRequest request, HttpServletResponse response) throws IOException {
		if (!PATH.equals(request.getPathInfo())) {
			return true;
		}
		if (assertion != null) {
			try {
				String role = assertion.verify(request.getHeader(CallerAssertion.HEADER),
						System.currentTimeMillis() / 1000).role();
				if (!"admin".equals(role)) {
					answerProblem(response, 403, "forbidden", "Only the fhirplug proxy converts here");
					return false;
				}
			} catch (IllegalArgumentException e) {
				answerProblem(response, 401, "login", "This FHIR store answers only the fhirplug proxy ("
						+ e.getMessage() + ")");
				return false;
			}
		}
		if (!"POST".equals(request.getMethod())) {
			response.setHeader("Allow", "POST");
			answerProblem(response, 405, "not-supported", PATH + " takes POST");
			return false;
		}
		String contentType = request.getContentType() == null ? "" : request.getContentType();
		String media = contentType.split(";", 2)[0].strip().toLowerCase(Locale.ROOT);
		boolean xml = media.equals("application/fhir+xml") || media.equals("application/xml") || media.equals("text/xml");
		boolean json = media.equals("application/fhir+json") || media.equals("application/json");
		if (!xml && !json) {
			answerProblem(response, 415, "not-supported", "Send FHIR XML or FHIR JSON, not " + media);
			return false;
		}
		byte[] body = readBody(request);
		if (body == null) {
			answerProblem(response, 413, "too-costly", "The body is larger than " + MAX_BODY_BYTES + " bytes");
			return false;
		}
		try {
			String text = decode(body, contentType, xml);
			if (xml) {
				answer(response, 200, "application/fhir+json;charset=utf-8", syntax.xmlToJson(text));
			} else {
				answer(response, 200, "application/fhir+xml;charset=utf-8", syntax.jsonToXml(text));
			}
		} catch (SyntaxProblem p) {
			answer(response, p.status(), "application/fhir+json;charset=utf-8", Outcomes.of(p));
		} catch (StackOverflowError e) {
			answerProblem(response, 400, "structure", "The document is nested too deeply to read");
		} catch (RuntimeException e) {
			LOG.warn("could not convert a {} body", media, e);
			answerProblem(response, 400, "structure", "The body could not be read as FHIR: " + e.getMessage());
		}
		return false;
	}

	private static byte[] readBody(HttpServletRequest request) throws IOException {
		try (InputStream in = request.getInputStream()) {
			byte[] data = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, MAX_BODY_BYTES + 1));
			return data.length > MAX_BODY_BYTES ? null : data;
		}
	}

	/**
	 * The text of the body: in the charset the Content-Type names, else (XML) the one its byte
	 * order mark or declaration names, else UTF-8. Bytes that are not of that charset are refused,
	 * never replaced.
	 */
	static String decode(byte[] body, String contentType, boolean xml) throws SyntaxProblem {
		Charset charset = null;
		int skip = 0;
		Matcher m = CHARSET.matcher(contentType);
		String named = m.find() ? m.group(1) : null;
		if (named == null && xml) {
			if (body.length >= 2 && (body[0] & 0xff) == 0xfe && (body[1] & 0xff) == 0xff) {
				named = "UTF-16BE";
			} else if (body.length >= 2 && (body[0] & 0xff) == 0xff && (body[1] & 0xff) == 0xfe) {
				named = "UTF-16LE";
			} else {
				String head = new String(body, 0, Math.min(body.length, 200), StandardCharsets.ISO_8859_1);
				Matcher d = DECLARED.matcher(head.startsWith("\u00ef\u00bb\u00bf") ? head.substring(3) : head);
				named = d.find() ? d.group(1) : null;
			}
		}
		try {
			charset = named == null ? StandardCharsets.UTF_8 : Charset.forName(named);
		} catch (IllegalCharsetNameException | UnsupportedCharsetException e) {
			throw SyntaxProblem.syntax("The charset " + named + " is not known", null, 0, 0);
		}
		String text;
		try {
			text = charset.newDecoder()
					.onMalformedInput(CodingErrorAction.REPORT)
					.onUnmappableCharacter(CodingErrorAction.REPORT)
					.decode(ByteBuffer.wrap(body, skip, body.length - skip))
					.toString();
		} catch (CharacterCodingException e) {
			throw SyntaxProblem.syntax("The body is not valid " + charset.name() + " text", null, 0, 0);
		}
		return text.startsWith("\ufeff") ? text.substring(1) : text;
	}

	private static void answerProblem(HttpServletResponse response, int status, String code, String text)
			throws IOException {
		SyntaxProblem p = new SyntaxProblem(status, java.util.List.of(new SyntaxProblem.Issue(code, text, null, 0, 0)));
		answer(response, status, "application/fhir+json;charset=utf-8", Outcomes.of(p));
	}

	private static void answer(HttpServletResponse response, int status, String contentType, String body)
			throws IOException {
		byte[] data = body.getBytes(StandardCharsets.UTF_8);
		response.setStatus(status);
		response.setContentType(contentType);
		response.setContentLength(data.length);
		response.getOutputStream().write(data);
		response.getOutputStream().flush();
	}
}
