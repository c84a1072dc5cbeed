"""Access by care relationship: who may *read* a resource because it names their organisation
in a care role (the pharmacy a prescription is for, the prescriber of a dispensed request).

The rules are one table (:mod:`careaccess.rules`); what they grant is a ``reader`` security
label (:mod:`careaccess.labels`) the proxy writes from the resource's content, never from the
caller. The store's interceptor (``store/.../tenancy/CareAccess.java``) reads the same labels
with the same meaning: read by tenant or reader label, write by tenant label only.
"""
