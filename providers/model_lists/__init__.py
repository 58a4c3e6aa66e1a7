"""Model-list sources: a JSON array of models published elsewhere, applied to the registry on a schedule.

    handles.py   which provider kind a handle's path is, and the provider base URL it implies (pure)
    entries.py   the list document into listed models and per-entry errors (pure)
    fetch.py     reading a source's list, bounded in size and time
    apply.py     listed models into providers, public models, deployments and prices
    services.py  create, change and refresh sources; the source configured by the environment

A source manages only the rows it made (see `ModelListEntry` and `ModelListProvider`):
a model an operator made by hand is never touched, even when a list names it.
See docs/model-lists.md.
"""
