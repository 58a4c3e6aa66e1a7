"""Portico's setup as code: the whole configuration as one YAML file, written and applied (docs/setup-as-code.md).

`schema` is the file's shape and its checks, `files` its YAML and `${ENV_VAR}`
references, `export` reads the database into it, `diff` plans and shows what
applying a file changes, and `apply` makes the change. It sits in the gateway,
the top layer, because a setup spans providers, tenants and billing.
"""
