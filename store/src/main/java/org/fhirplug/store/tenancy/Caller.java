package org.fhirplug.store.tenancy;

/**
 * Who a request to the store acts for, as the fhirplug proxy asserted it.
 *
 * <p>{@code role} is one of the proxy's roles (admin, reader, validator, spoke, hub, prescriber, dispenser); {@code ods}
 * is the organisation a tenant role acts for. {@link #SYSTEM} stands for the store's own work
 * (package installation, background jobs): it never comes from an HTTP request.
 */
public record Caller(String role, String ods) {

	public static final Caller SYSTEM = new Caller("system", "");

	/**
	 * Roles that act for one organisation (hub-and-spoke pharmacies, EPS prescribing and dispensing
	 * systems): each sees and changes only what is labelled with its ODS code.
	 */
	public boolean isTenant() {
		return "spoke".equals(role) || "hub".equals(role) || "prescriber".equals(role)
				|| "dispenser".equals(role);
	}

	/** The proxy's own identity and the store's internal work: unrestricted. */
	public boolean isUnrestricted() {
		return "admin".equals(role) || this == SYSTEM;
	}

	public boolean isReader() {
		return "reader".equals(role);
	}

	public boolean isValidator() {
		return "validator".equals(role);
	}
}
