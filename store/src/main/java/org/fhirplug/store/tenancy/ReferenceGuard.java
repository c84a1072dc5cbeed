package org.fhirplug.store.tenancy;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.i18n.Msg;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.jpa.api.dao.IFhirResourceDao;
import ca.uhn.fhir.rest.api.server.SystemRequestDetails;
import ca.uhn.fhir.rest.server.exceptions.InvalidRequestException;
import ca.uhn.fhir.rest.server.exceptions.ResourceGoneException;
import ca.uhn.fhir.rest.server.exceptions.ResourceNotFoundException;
import ca.uhn.fhir.util.ResourceReferenceInfo;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.instance.model.api.IIdType;
import java.util.HashSet;
import java.util.Set;

/**
 * No existence oracle through a write's references. HAPI checks every reference a write makes
 * (referential integrity) and refuses one to a missing resource with {@code HAPI-1094 Resource X
 * not found, specified in path: P}, but it accepts one to a resource another tenant holds, and
 * answers "is deleted" for a deleted one: three answers that tell which ids exist. Here, before
 * HAPI looks, a tenant's reference to a resource it may not read (another tenant's, or deleted)
 * is refused with HAPI's own "not found" words, so each reads exactly as a missing id.
 */
final class ReferenceGuard {

	private final DaoRegistry daos;

	ReferenceGuard(DaoRegistry daos) {
		this.daos = daos;
	}

	/**
	 * @param before the version an update replaces (null for a create): a reference it already made
	 *     tells nothing new (a hub moving a Task whose requester's Organization only the spoke reads)
	 */
	void check(Caller caller, IBaseResource resource, IBaseResource before) {
		if (daos == null) {
			return;
		}
		FhirContext ctx = FhirContext.forR4Cached();
		Set<String> had = new HashSet<>();
		if (before != null) {
			for (ResourceReferenceInfo info : ctx.newTerser().getAllResourceReferences(before)) {
				IIdType was = info.getResourceReference().getReferenceElement();
				if (was != null && was.hasResourceType() && was.hasIdPart()) {
					had.add(was.toUnqualifiedVersionless().getValue());
				}
			}
		}
		for (ResourceReferenceInfo info : ctx.newTerser().getAllResourceReferences(resource)) {
			IIdType target = info.getResourceReference().getReferenceElement();
			if (target == null || target.isLocal() || target.isAbsolute() || !target.hasResourceType()
					|| !target.hasIdPart() || !daos.isResourceTypeSupported(target.getResourceType())) {
				continue; // contained, another server's, a urn:uuid HAPI resolves within the transaction
			}
			if (had.contains(target.toUnqualifiedVersionless().getValue())) {
				continue;
			}
			IFhirResourceDao<?> dao = daos.getResourceDao(target.getResourceType());
			IBaseResource found;
			try {
				found = dao.read(target.toUnqualifiedVersionless(), new SystemRequestDetails());
			} catch (ResourceNotFoundException e) {
				continue; // HAPI's own check answers, in the words used below
			} catch (ResourceGoneException e) {
				found = null;
			}
			if (found == null || !TenancyInterceptor.visible(caller, found)) {
				throw notFound(target, resource.fhirType() + "." + info.getName());
			}
		}
	}

	/** Word for word HAPI's answer for a reference to an id it does not hold (HAPI-1094). */
	static InvalidRequestException notFound(IIdType target, String path) {
		return new InvalidRequestException(Msg.code(1094) + "Resource " + target.getResourceType() + "/"
				+ target.getIdPart() + " not found, specified in path: " + path);
	}
}
