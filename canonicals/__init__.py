"""One stored copy per canonical: how a conformance resource is identified (url and version),
which write keeps it at one copy, and which of the duplicates already stored is kept."""
