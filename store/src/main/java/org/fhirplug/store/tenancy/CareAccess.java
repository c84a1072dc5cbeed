package org.fhirplug.store.tenancy;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.hl7.fhir.instance.model.api.IBaseCoding;
import org.hl7.fhir.instance.model.api.IBaseResource;

/**
 * Access by care relationship, the store's half: the parallel of the proxy's {@code careaccess}
 * package (rules.py, labels.py). The proxy writes {@value #READER_SYSTEM} labels from the rule
 * table below and a resource's content; the store gives them the same meaning:
 *
 * <ul>
 *   <li>a tenant <b>reads</b> a resource labelled with its ODS code as tenant <i>or</i> reader;
 *   <li>a tenant <b>writes</b> only a resource labelled with its ODS code as tenant: a reader label
 *       never admits a write (the one exception is a completion the proxy granted, see
 *       {@link TenancyInterceptor});
 *   <li>reader labels sit only on the types the rules name, and a write never removes one.
 * </ul>
 *
 * <p>The rule table is kept as data, row for row with {@code careaccess/rules.py} {@code RULES}:
 * both are checked against {@code tests/fixtures/careaccess/cases.json}.
 */
public final class CareAccess {

	public static final String READER_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/reader";

	/** One care relationship: writing {@code source} grants {@code target} readers named by {@code via}. */
	public record Rule(String name, String source, String via, String target) {}

	public static final List<Rule> RULES = List.of(
			new Rule("nominated-pharmacy", "MedicationRequest", "MedicationRequest.dispenseRequest.performer",
					"MedicationRequest"),
			new Rule("task-owner", "Task", "Task.owner (Task.focus: the MedicationRequest)", "MedicationRequest"),
			new Rule("request-patient", "MedicationRequest", "MedicationRequest.subject", "Patient"),
			new Rule("prescriber", "MedicationDispense", "MedicationDispense.authorizingPrescription",
					"MedicationDispense"));

	/** The resource types that may ever carry a reader label. */
	public static final Set<String> READABLE_TYPES = targets();

	private CareAccess() {}

	private static Set<String> targets() {
		Set<String> out = new HashSet<>();
		for (Rule r : RULES) {
			out.add(r.target());
		}
		return Set.copyOf(out);
	}

	/** The ODS codes that may read {@code resource} by a care relationship. */
	public static Set<String> readers(IBaseResource resource) {
		return codes(resource, READER_SYSTEM);
	}

	/** The ODS codes {@code resource} is labelled for as a tenant (read and write). */
	public static Set<String> tenants(IBaseResource resource) {
		return codes(resource, TenancyInterceptor.TENANT_SYSTEM);
	}

	/** {@code ods} holds a tenant or a reader label: it may read. */
	public static boolean readableBy(IBaseResource resource, String ods) {
		return tenants(resource).contains(ods) || readers(resource).contains(ods);
	}

	/** {@code ods} holds a tenant label: it may write. */
	public static boolean writableBy(IBaseResource resource, String ods) {
		return tenants(resource).contains(ods);
	}

	/** A reader label on a type no rule names is none the proxy wrote: refused. */
	public static boolean readerLabelsAllowed(IBaseResource resource) {
		return readers(resource).isEmpty() || READABLE_TYPES.contains(resource.fhirType());
	}

	private static Set<String> codes(IBaseResource resource, String system) {
		Set<String> out = new HashSet<>();
		if (resource == null || resource.getMeta() == null) {
			return out;
		}
		for (IBaseCoding c : resource.getMeta().getSecurity()) {
			if (system.equals(c.getSystem()) && c.getCode() != null) {
				out.add(c.getCode());
			}
		}
		return out;
	}
}
