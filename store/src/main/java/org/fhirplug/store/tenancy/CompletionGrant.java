package org.fhirplug.store.tenancy;

import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.exceptions.ForbiddenOperationException;
import java.util.Set;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.MedicationRequest;

/**
 * The one write a reader label admits: a MedicationRequest completed by the dispense that
 * completes it (the proxy's {@code dispensing/completion.py}, driven by {@code plugins/completion.py}).
 *
 * <p>The dispensing organisation reads the prescriber's request but does not own it. When the proxy's
 * completion rule finds a dispense completes the request, it sends the dispense and the request's new
 * status in ONE transaction, as the dispensing organisation, with a grant header ({@link
 * CallerAssertion#GRANT_HEADER}) signed with the store secret and naming that request. This admits
 * exactly: a request the caller may read, named by a valid grant, moved from active (or on-hold) to
 * completed, nothing else changed (its labels included). A caller of the proxy cannot send a grant:
 * the proxy relays only an allow-list of headers and signs this one itself.
 */
final class CompletionGrant {

	private final CallerAssertion assertion;

	CompletionGrant(CallerAssertion assertion) {
		this.assertion = assertion;
	}

	boolean granted(RequestDetails request, Caller caller, IBaseResource before, IBaseResource after) {
		if (!(before instanceof MedicationRequest was) || !(after instanceof MedicationRequest now)
				|| !CareAccess.readableBy(before, caller.ods())) {
			return false;
		}
		Set<String> granted;
		try {
			granted = assertion.verifyGrant(
					request == null ? null : request.getHeader(CallerAssertion.GRANT_HEADER),
					System.currentTimeMillis() / 1000);
		} catch (IllegalArgumentException e) {
			throw new ForbiddenOperationException("The completion grant is not valid (" + e.getMessage() + ")");
		}
		String id = "MedicationRequest/" + before.getIdElement().getIdPart();
		if (!granted.contains(id)) {
			return false;
		}
		if (was.getStatus() != MedicationRequest.MedicationRequestStatus.ACTIVE
				&& was.getStatus() != MedicationRequest.MedicationRequestStatus.ONHOLD) {
			return false;
		}
		if (now.getStatus() != MedicationRequest.MedicationRequestStatus.COMPLETED) {
			return false;
		}
		return onlyStatusChanged(was, now);
	}

	/** Everything but status, id and the version bookkeeping in meta is as it was; labels too. */
	static boolean onlyStatusChanged(MedicationRequest was, MedicationRequest now) {
		if (!CareAccess.tenants(was).equals(CareAccess.tenants(now))
				|| !CareAccess.readers(was).equals(CareAccess.readers(now))) {
			return false;
		}
		MedicationRequest a = was.copy();
		MedicationRequest b = now.copy();
		for (MedicationRequest r : new MedicationRequest[] {a, b}) {
			r.setStatus(null);
			r.setMeta(null);
			r.setIdElement(null);
		}
		return a.equalsDeep(b);
	}
}
