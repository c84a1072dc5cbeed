package org.fhirplug.store.tenancy;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.Set;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Verifies the caller assertion the proxy signs onto every request it sends the store.
 *
 * <p>The header reads {@code v1;<role>;<ods>;<unix seconds>;<signature>}, the signature being
 * HMAC-SHA256 over everything before the last {@code ;}, keyed with the secret the proxy and the
 * store share (FHIRPLUG_STORE_SECRET), base64url without padding. A caller of the proxy cannot
 * forge it: the proxy sends only its own value of this header, and the secret never leaves the
 * two processes. The timestamp bounds how long a captured header could be replayed.
 */
public final class CallerAssertion {

	public static final String HEADER = "X-Fhirplug-Caller";
	/** A rule-driven write the proxy grants for one request: {@code v1;complete;<Type/id,...>;<time>;<sig>}. */
	public static final String GRANT_HEADER = "X-Fhirplug-Grant";
	public static final String SECRET_ENV = "FHIRPLUG_STORE_SECRET";
	static final long MAX_SKEW_SECONDS = 300;
	static final int MIN_SECRET_LENGTH = 32;
	private static final Pattern WORD = Pattern.compile("[A-Za-z0-9_-]{0,64}");
	private static final Pattern TARGETS =
			Pattern.compile("[A-Z][A-Za-z]{1,63}/[A-Za-z0-9.-]{1,64}(,[A-Z][A-Za-z]{1,63}/[A-Za-z0-9.-]{1,64}){0,49}");

	private final byte[] secret;
	private final ThreadLocal<Mac> macs;

	public CallerAssertion(String secret) {
		if (secret == null || secret.length() < MIN_SECRET_LENGTH) {
			throw new IllegalStateException(SECRET_ENV + " must be set to a shared secret of at least "
					+ MIN_SECRET_LENGTH + " characters: the store admits only requests the fhirplug proxy signed");
		}
		this.secret = secret.getBytes(StandardCharsets.UTF_8);
		this.macs = ThreadLocal.withInitial(this::newMac);
	}

	/** The secret from the environment (or the system property of the same name). */
	public static CallerAssertion fromEnvironment() {
		String value = System.getenv(SECRET_ENV);
		if (value == null || value.isBlank()) {
			value = System.getProperty(SECRET_ENV);
		}
		return new CallerAssertion(value);
	}

	/**
	 * The caller a header asserts.
	 *
	 * @throws IllegalArgumentException when the header is malformed, badly signed or too old
	 */
	public Caller verify(String header, long nowSeconds) {
		String[] parts = signedParts(header, nowSeconds, 512);
		if (!WORD.matcher(parts[1]).matches() || !WORD.matcher(parts[2]).matches()) {
			throw new IllegalArgumentException("malformed caller assertion");
		}
		return new Caller(parts[1], parts[2]);
	}

	/**
	 * The resources a grant header lets the request complete ({@code Type/id}); empty without one.
	 * Signed like the caller assertion: a caller of the proxy can neither forge nor relay one.
	 *
	 * @throws IllegalArgumentException when a header is there but malformed, badly signed or too old
	 */
	public Set<String> verifyGrant(String header, long nowSeconds) {
		if (header == null) {
			return Set.of();
		}
		String[] parts = signedParts(header, nowSeconds, 4096);
		if (!"complete".equals(parts[1]) || !TARGETS.matcher(parts[2]).matches()) {
			throw new IllegalArgumentException("malformed grant");
		}
		return Set.of(parts[2].split(","));
	}

	/** {@code v1;<a>;<b>;<time>}, checked for its signature and age. */
	private String[] signedParts(String header, long nowSeconds, int maxLength) {
		if (header == null || header.length() > maxLength) {
			throw new IllegalArgumentException("no caller assertion");
		}
		int cut = header.lastIndexOf(';');
		if (cut < 0) {
			throw new IllegalArgumentException("malformed caller assertion");
		}
		String signed = header.substring(0, cut);
		byte[] given;
		try {
			given = Base64.getUrlDecoder().decode(header.substring(cut + 1));
		} catch (IllegalArgumentException e) {
			throw new IllegalArgumentException("malformed caller assertion signature");
		}
		byte[] expected = macs.get().doFinal(signed.getBytes(StandardCharsets.UTF_8));
		if (!MessageDigest.isEqual(expected, given)) {
			throw new IllegalArgumentException("caller assertion signature does not verify");
		}
		String[] parts = signed.split(";", -1);
		if (parts.length != 4 || !"v1".equals(parts[0])) {
			throw new IllegalArgumentException("malformed caller assertion");
		}
		long at;
		try {
			at = Long.parseLong(parts[3]);
		} catch (NumberFormatException e) {
			throw new IllegalArgumentException("malformed caller assertion time");
		}
		if (Math.abs(nowSeconds - at) > MAX_SKEW_SECONDS) {
			throw new IllegalArgumentException("caller assertion expired");
		}
		return parts;
	}

	private Mac newMac() {
		try {
			Mac mac = Mac.getInstance("HmacSHA256");
			mac.init(new SecretKeySpec(secret, "HmacSHA256"));
			return mac;
		} catch (GeneralSecurityException e) {
			throw new IllegalStateException("HmacSHA256 is not available", e);
		}
	}
}
