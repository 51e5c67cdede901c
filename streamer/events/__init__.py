"""The events a pipeline emits: one typed class, its enums, and the JSON Schema."""
