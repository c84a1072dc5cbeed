package org.fhirplug.store.tenancy;

import ca.uhn.fhir.i18n.Msg;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.jpa.searchparam.SearchParameterMap;
import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.api.server.IPreResourceAccessDetails;
import ca.uhn.fhir.rest.api.server.IPreResourceShowDetails;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.api.server.SystemRequestDetails;
import ca.uhn.fhir.rest.param.HasParam;
import ca.uhn.fhir.rest.param.ReferenceParam;
import ca.uhn.fhir.rest.param.TokenOrListParam;
import ca.uhn.fhir.rest.param.TokenParam;
import ca.uhn.fhir.rest.server.exceptions.AuthenticationException;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import ca.uhn.fhir.rest.server.exceptions.ForbiddenOperationException;
import ca.uhn.fhir.rest.server.exceptions.InvalidRequestException;
import ca.uhn.fhir.rest.server.exceptions.ResourceGoneException;
import ca.uhn.fhir.rest.server.exceptions.ResourceNotFoundException;
import ca.uhn.fhir.rest.server.method.PageMethodBinding;
import ca.uhn.fhir.rest.server.util.ICachedSearchDetails;
import jakarta.servlet.http.HttpServletRequest;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.hl7.fhir.instance.model.api.IBaseCoding;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.instance.model.api.IIdType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The store's own line of tenancy, behind the proxy's: HAPI has already parsed the request (any
 * URL form, format, bundle entry, chain), so nothing here re-reads URLs.
 *
 * <ul>
 *   <li>Every request must carry the proxy's signed caller assertion ({@link CallerAssertion});
 *       without one only {@code GET metadata} is answered. Fail closed.
 *   <li>Spokes and hubs see only resources labelled with their ODS code in {@code meta.security}
 *       (system {@value #TENANT_SYSTEM}), or as readers by a care relationship ({@link CareAccess}:
 *       read, never write); conformance resources are shared reading. Searches are
 *       narrowed in the database, so totals and pages hold; whatever else would be shown
 *       (includes, history, pages, batch reads, conditional matches) is filtered.
 *   <li>Another tenant's resource is answered exactly as an unknown id: same status, same text.
 *   <li>A tenant writes only resources that carry its own tenant label, never removes a label, never
 *       touches another tenant's resource or shared conformance content; the one write a reader
 *       label admits is a completion the proxy signed ({@link CompletionGrant}).
 *   <li>A tenant's write may not refer to what it cannot read: answered as a missing id ({@link
 *       ReferenceGuard}).
 *   <li>Chained parameters and {@code _has} would be evaluated over every tenant's data: refused.
 * </ul>
 *
 * <p>Labels are the proxy's to set (it knows who a Task involves); the store checks them.
 */
@Interceptor
public class TenancyInterceptor {

	public static final String TENANT_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/tenant";
	/** Shared reading for every role; changed only by validators and administrators. */
	public static final Set<String> CONFORMANCE = Set.of(
			"StructureDefinition", "ValueSet", "CodeSystem", "ImplementationGuide", "NamingSystem",
			"ConceptMap", "SearchParameter", "OperationDefinition", "CompartmentDefinition", "StructureMap",
			"CapabilityStatement");

	private static final Logger LOG = LoggerFactory.getLogger(TenancyInterceptor.class);
	private static final String CALLER_KEY = TenancyInterceptor.class.getName() + ".caller";
	private static final Set<RestOperationTypeEnum> READS = EnumSet.of(
			RestOperationTypeEnum.READ, RestOperationTypeEnum.VREAD, RestOperationTypeEnum.SEARCH_TYPE,
			RestOperationTypeEnum.SEARCH_SYSTEM, RestOperationTypeEnum.HISTORY_INSTANCE,
			RestOperationTypeEnum.HISTORY_TYPE, RestOperationTypeEnum.HISTORY_SYSTEM,
			RestOperationTypeEnum.GET_PAGE);
	private static final Set<RestOperationTypeEnum> WRITES = EnumSet.of(
			RestOperationTypeEnum.CREATE, RestOperationTypeEnum.UPDATE, RestOperationTypeEnum.PATCH,
			RestOperationTypeEnum.DELETE, RestOperationTypeEnum.TRANSACTION, RestOperationTypeEnum.BATCH);
	private static final Set<RestOperationTypeEnum> SEARCHES = EnumSet.of(
			RestOperationTypeEnum.SEARCH_TYPE, RestOperationTypeEnum.SEARCH_SYSTEM, RestOperationTypeEnum.GET_PAGE);
	private static final Set<RestOperationTypeEnum> SINGLE_READS =
			EnumSet.of(RestOperationTypeEnum.READ, RestOperationTypeEnum.VREAD);

	private final CallerAssertion assertion;
	private final CompletionGrant completion;
	private final ReferenceGuard references;

	/** For the official HAPI image's {@code hapi.fhir.custom-interceptor-classes}. */
	public TenancyInterceptor() {
		this(CallerAssertion.fromEnvironment());
	}

	public TenancyInterceptor(CallerAssertion assertion) {
		this.assertion = assertion;
		this.completion = new CompletionGrant(assertion);
		this.references = new ReferenceGuard();
		LOG.info("store-side tenancy on: only requests the fhirplug proxy signed are answered");
	}

	// ------------------------------------------------------------------ who is asking

	@Hook(Pointcut.SERVER_INCOMING_REQUEST_POST_PROCESSED)
	public boolean authenticate(RequestDetails request, HttpServletRequest http) {
		String header = http.getHeader(CallerAssertion.HEADER);
		if (header == null && "GET".equals(http.getMethod()) && "/metadata".equals(http.getPathInfo())) {
			return true; // the capability statement holds no data; health checks read it
		}
		request.getUserData().put(CALLER_KEY, verify(header));
		return true;
	}

	private Caller verify(String header) {
		try {
			return assertion.verify(header, System.currentTimeMillis() / 1000);
		} catch (IllegalArgumentException e) {
			throw new AuthenticationException(
					"This FHIR store answers only the fhirplug proxy (" + e.getMessage() + ")");
		}
	}

	/** The caller of a request; the store's internal work (no HTTP request) is {@link Caller#SYSTEM}. */
	Caller callerOf(RequestDetails request) {
		if (request == null || request instanceof SystemRequestDetails) {
			return Caller.SYSTEM;
		}
		Object known = request.getUserData().get(CALLER_KEY);
		if (known instanceof Caller caller) {
			return caller;
		}
		Caller caller = verify(request.getHeader(CallerAssertion.HEADER)); // e.g. a batch's sub-request
		request.getUserData().put(CALLER_KEY, caller);
		return caller;
	}

	// ------------------------------------------------------------------ what a role may do

	@Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_HANDLED)
	public void admit(RequestDetails request, RestOperationTypeEnum operation) {
		if (operation == RestOperationTypeEnum.METADATA) {
			return;
		}
		Caller caller = callerOf(request);
		if (caller.isUnrestricted()) {
			return;
		}
		boolean validate = "$validate".equals(request.getOperation())
				&& (operation == RestOperationTypeEnum.EXTENDED_OPERATION_TYPE
						|| operation == RestOperationTypeEnum.EXTENDED_OPERATION_SERVER
						|| operation == RestOperationTypeEnum.VALIDATE)
				&& (request.getId() == null || !request.getId().hasIdPart());
		boolean allowed = READS.contains(operation) || validate
				|| (WRITES.contains(operation) && !caller.isReader());
		if (!allowed || !(caller.isReader() || caller.isValidator() || caller.isTenant())
				|| (caller.isTenant() && caller.ods().isEmpty())) {
			throw new ForbiddenOperationException(
					"The " + caller.role() + " role may not perform " + operation.getCode() + " here");
		}
		if (caller.isTenant()) {
			refuseCrossTenantParameters(request.getParameters());
		}
	}

	private static void refuseCrossTenantParameters(Map<String, String[]> parameters) {
		for (Map.Entry<String, String[]> p : parameters.entrySet()) {
			String name = p.getKey();
			if (name.startsWith("_has") || name.contains(".")) {
				throw crossTenant(name);
			}
			if ("_sort".equals(name)) {
				for (String v : p.getValue()) {
					if (v.contains(".")) {
						throw crossTenant("_sort");
					}
				}
			}
		}
	}

	private static InvalidRequestException crossTenant(String parameter) {
		return new InvalidRequestException("Search parameter " + parameter
				+ ": chained parameters and _has would look into other organisations' data and are not "
				+ "available to tenants");
	}

	// ------------------------------------------------------------------ reads

	@Hook(Pointcut.STORAGE_PRESEARCH_REGISTERED)
	public void narrow(ICachedSearchDetails search, RequestDetails request, SearchParameterMap map) {
		Caller caller = callerOf(request);
		if (!caller.isTenant()) {
			return;
		}
		for (Map.Entry<String, List<List<ca.uhn.fhir.model.api.IQueryParameterType>>> e : map.entrySet()) {
			for (List<ca.uhn.fhir.model.api.IQueryParameterType> or : e.getValue()) {
				for (ca.uhn.fhir.model.api.IQueryParameterType p : or) {
					if (p instanceof HasParam || (p instanceof ReferenceParam r && r.getChain() != null)) {
						throw crossTenant(e.getKey());
					}
				}
			}
		}
		String type = search.getResourceType(); // null for a search across types: narrowed too
		if ((type == null || !CONFORMANCE.contains(type)) && !alreadyNarrowed(map, caller.ods())) {
			// what it owns, or reads by a care relationship (CareAccess): one OR clause
			map.add("_security", new TokenOrListParam()
					.addOr(new TokenParam(TENANT_SYSTEM, caller.ods()))
					.addOr(new TokenParam(CareAccess.READER_SYSTEM, caller.ods())));
		}
	}

	/**
	 * The proxy's first line already asks for exactly these labels (its own, or its own as a
	 * reader) or for its own tenant label alone: a second clause would only cost the database
	 * another join.
	 */
	private static boolean alreadyNarrowed(SearchParameterMap map, String ods) {
		List<List<ca.uhn.fhir.model.api.IQueryParameterType>> and = map.get("_security");
		if (and == null) {
			return false;
		}
		for (List<ca.uhn.fhir.model.api.IQueryParameterType> or : and) {
			boolean all = !or.isEmpty();
			for (ca.uhn.fhir.model.api.IQueryParameterType p : or) {
				all &= p instanceof TokenParam t && t.getModifier() == null && ods.equals(t.getValue())
						&& (TENANT_SYSTEM.equals(t.getSystem()) || CareAccess.READER_SYSTEM.equals(t.getSystem()));
			}
			if (all) {
				return true;
			}
		}
		return false;
	}

	@Hook(Pointcut.STORAGE_PREACCESS_RESOURCES)
	public void hideFromAccess(IPreResourceAccessDetails details, RequestDetails request) {
		Caller caller = callerOf(request);
		if (caller.isUnrestricted() || caller.isReader() || isSearch(request)) {
			// A search's matches are narrowed in the database and every resource it shows passes
			// hideFromShow; asking here would make HAPI load every match of the search a second
			// time (measured: +40% on a search), for no resource the other two lines let through.
			return;
		}
		int hidden = 0;
		for (int i = 0; i < details.size(); i++) {
			IBaseResource r = details.getResource(i);
			if (r != null && !visible(caller, r)) {
				if (isSingleRead(request)) {
					throw notKnown(request.getId());
				}
				details.setDontReturnResourceAtIndex(i);
				hidden++;
			}
		}
		if (hidden > 0 && hidden == details.size()
				&& request.getRestOperationType() == RestOperationTypeEnum.HISTORY_INSTANCE) {
			throw notKnown(request.getId()); // another tenant's history reads as an unknown id's
		}
	}

	/** Also what a conditional create, update, patch or delete matched: it never matches another's. */
	@Hook(Pointcut.STORAGE_PRESHOW_RESOURCES)
	public void hideFromShow(IPreResourceShowDetails details, RequestDetails request) {
		Caller caller = callerOf(request);
		if (caller.isUnrestricted() || caller.isReader()) {
			return;
		}
		for (int i = 0; i < details.size(); i++) {
			IBaseResource r = details.getResource(i);
			if (r != null && !visible(caller, r)) {
				if (isSingleRead(request)) {
					throw notKnown(request.getId());
				}
				if (isPage(request)) {
					throw unknownSearch(request); // someone else's search: its total and links are theirs
				}
				details.setResource(i, null);
			}
		}
	}

	private static boolean isSearch(RequestDetails request) {
		return request != null && SEARCHES.contains(request.getRestOperationType());
	}

	private static boolean isPage(RequestDetails request) {
		return request != null && request.getRestOperationType() == RestOperationTypeEnum.GET_PAGE;
	}

	/** A deleted resource of another tenant reads as an unknown id, not as "deleted at ...". */
	@Hook(Pointcut.SERVER_PRE_PROCESS_OUTGOING_EXCEPTION)
	public BaseServerResponseException hideGone(RequestDetails request, Throwable thrown) {
		if (!(thrown instanceof ResourceGoneException) || request == null || request.getId() == null) {
			return null;
		}
		Object caller = request.getUserData().get(CALLER_KEY);
		if (caller instanceof Caller c && !c.isUnrestricted() && !c.isReader()) {
			return notKnown(request.getId());
		}
		return null;
	}

	// ------------------------------------------------------------------ writes

	@Hook(Pointcut.STORAGE_PRESTORAGE_RESOURCE_CREATED)
	public void creating(IBaseResource resource, RequestDetails request) {
		Caller caller = callerOf(request);
		if (caller.isUnrestricted()) {
			return;
		}
		checkWritable(caller, resource);
		if (caller.isTenant() && !labels(resource).contains(caller.ods())) {
			throw new ForbiddenOperationException("A resource written for " + caller.ods()
					+ " must carry its tenant label (the fhirplug proxy sets it)");
		}
		if (caller.isTenant()) {
			checkReaderLabels(resource, null);
			references.check(caller, resource, null, request);
		}
	}

	@Hook(Pointcut.STORAGE_PRESTORAGE_RESOURCE_UPDATED)
	public void updating(IBaseResource before, IBaseResource after, RequestDetails request) {
		Caller caller = callerOf(request);
		if (caller.isUnrestricted()) {
			return;
		}
		if (before != null && !visible(caller, before)) {
			throw notKnown(before.getIdElement());
		}
		checkWritable(caller, after);
		if (caller.isTenant() && before != null && !CareAccess.writableBy(before, caller.ods())) {
			if (completion.granted(request, caller, before, after)) {
				return; // the proxy's completion rule, signed for this very resource (CompletionGrant)
			}
			throw readOnly(before);
		}
		if (caller.isTenant()) {
			Set<String> now = labels(after);
			if (!now.contains(caller.ods()) || !now.containsAll(labels(before))) {
				throw new ForbiddenOperationException(
						"An update may not remove tenant labels: who may see a resource is the server's to decide");
			}
			checkReaderLabels(after, before);
			references.check(caller, after, before, request);
		}
	}

	/** Reader labels only on the types the care rules name, and never taken away by an update. */
	private static void checkReaderLabels(IBaseResource after, IBaseResource before) {
		if (!CareAccess.readerLabelsAllowed(after)) {
			throw new ForbiddenOperationException(
					after.fhirType() + " carries no reader labels: no care relationship rule names it");
		}
		if (before != null && !CareAccess.readers(after).containsAll(CareAccess.readers(before))) {
			throw new ForbiddenOperationException(
					"An update may not remove reader labels: who may read a resource is the server's to decide");
		}
	}

	/** A resource the caller reads by a care relationship only: seen, so no oracle in saying so. */
	private static ForbiddenOperationException readOnly(IBaseResource resource) {
		return new ForbiddenOperationException(resource.getIdElement().toUnqualifiedVersionless().getValue()
				+ " is shared with your organisation for reading only");
	}

	@Hook(Pointcut.STORAGE_PRESTORAGE_RESOURCE_DELETED)
	public void deleting(IBaseResource resource, RequestDetails request) {
		Caller caller = callerOf(request);
		if (caller.isUnrestricted()) {
			return;
		}
		if (!visible(caller, resource)) {
			throw notKnown(resource.getIdElement());
		}
		checkWritable(caller, resource);
		if (caller.isTenant() && !CareAccess.writableBy(resource, caller.ods())) {
			throw readOnly(resource);
		}
	}

	private static void checkWritable(Caller caller, IBaseResource resource) {
		boolean conformance = CONFORMANCE.contains(resource.fhirType());
		if (caller.isReader()) {
			throw new ForbiddenOperationException("The reader role cannot write");
		}
		if (caller.isValidator() && !conformance) {
			throw new ForbiddenOperationException("The validator role changes conformance resources only");
		}
		if (caller.isTenant() && conformance) {
			throw new ForbiddenOperationException(resource.fhirType()
					+ " is shared conformance content: only validators and administrators change it");
		}
		if (!caller.isTenant() && !caller.isValidator()) {
			throw new ForbiddenOperationException("The " + caller.role() + " role cannot write");
		}
	}

	// ------------------------------------------------------------------ labels

	static boolean visible(Caller caller, IBaseResource resource) {
		if (caller.isUnrestricted() || caller.isReader()) {
			return true;
		}
		String type = resource.fhirType();
		if (CONFORMANCE.contains(type) || "OperationOutcome".equals(type)) {
			return true;
		}
		return caller.isTenant() && CareAccess.readableBy(resource, caller.ods());
	}

	static Set<String> labels(IBaseResource resource) {
		Set<String> out = new HashSet<>();
		if (resource.getMeta() == null) {
			return out;
		}
		for (IBaseCoding c : resource.getMeta().getSecurity()) {
			if (TENANT_SYSTEM.equals(c.getSystem()) && c.getCode() != null) {
				out.add(c.getCode());
			}
		}
		return out;
	}

	private static boolean isSingleRead(RequestDetails request) {
		return request != null && SINGLE_READS.contains(request.getRestOperationType());
	}

	/** Word for word what the store says of a paging id it does not have (HAPI-0417). */
	private static ResourceGoneException unknownSearch(RequestDetails request) {
		String[] ids = request.getParameters().get("_getpages");
		String id = ids == null || ids.length == 0 ? "" : ids[0];
		return new ResourceGoneException(Msg.code(417) + request.getFhirContext().getLocalizer()
				.getMessage(PageMethodBinding.class, "unknownSearchId", id));
	}

	/** Word for word what the store says of an id it does not have (HAPI-2001). */
	private static ResourceNotFoundException notKnown(IIdType id) {
		String what = id == null ? "" : id.toUnqualifiedVersionless().getValue();
		return new ResourceNotFoundException(Msg.code(2001) + "Resource " + what + " is not known");
	}
}
