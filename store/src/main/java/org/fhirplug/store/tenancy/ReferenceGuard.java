package org.fhirplug.store.tenancy;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.i18n.Msg;
import ca.uhn.fhir.jpa.api.dao.IFhirResourceDao;
import ca.uhn.fhir.jpa.provider.BaseJpaResourceProvider;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.api.server.SystemRequestDetails;
import ca.uhn.fhir.rest.server.IResourceProvider;
import ca.uhn.fhir.rest.server.RestfulServer;
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

	private final FhirContext ctx = FhirContext.forR4Cached();

	/**
	 * @param before the version an update replaces (null for a create): a reference it already made
	 *     tells nothing new (a hub moving a Task whose requester's Organization only the spoke reads)
	 */
	void check(Caller caller, IBaseResource resource, IBaseResource before, RequestDetails request) {
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
					|| !target.hasIdPart()) {
				continue; // contained, another server's, a urn:uuid HAPI resolves within the transaction
			}
			if (had.contains(target.toUnqualifiedVersionless().getValue())) {
				continue;
			}
			IFhirResourceDao<?> dao = daoFor(target.getResourceType(), request);
			if (dao == null) {
				continue; // a type this server does not hold: HAPI refuses the reference itself
			}
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

	/**
	 * The store's DAO for a type, found through the JPA resource providers of the server the request
	 * came to: the same way in the embedded launcher and in the official HAPI image, which makes
	 * this interceptor by its no-argument constructor, outside Spring's wiring.
	 */
	private IFhirResourceDao<?> daoFor(String type, RequestDetails request) {
		if (request == null || !(request.getServer() instanceof RestfulServer server)) {
			return null;
		}
		for (IResourceProvider provider : server.getResourceProviders()) {
			if (provider instanceof BaseJpaResourceProvider<?> jpa
					&& type.equals(ctx.getResourceType(jpa.getResourceType()))) {
				return jpa.getDao();
			}
		}
		return null;
	}

	/** Word for word HAPI's answer for a reference to an id it does not hold (HAPI-1094). */
	static InvalidRequestException notFound(IIdType target, String path) {
		return new InvalidRequestException(Msg.code(1094) + "Resource " + target.getResourceType() + "/"
				+ target.getIdPart() + " not found, specified in path: " + path);
	}
}
