"""The bundled demo system under test: an inventory service, a shop, and a shop candidate with planted bugs."""
