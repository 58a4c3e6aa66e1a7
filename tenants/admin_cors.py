"""The tenant form: CORS origins one per line (rather than the JSON list the column holds), and model access.

A tenant's model list has three states (tenants/tenant_services.py): every
model, only those listed, and none. A list box alone cannot tell "every" from
"none", so the form asks which with `model_access`, and the admin saves the
three states as the management API does, through `tenant_add`/`tenant_update`.
"""

from __future__ import annotations

from typing import Any

from django import forms

from tenants.models import Tenant


class OriginsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "placeholder": "https://app.example.com"})

    def prepare_value(self, value: Any) -> Any:
        # The bound form hands back what was typed; the unbound one the stored list.
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        # Blank lines and surrounding spaces are a textarea's, not the operator's meaning.
        return [line.strip() for line in str(value or "").splitlines() if line.strip()]


EVERY_MODEL, LISTED_MODELS = "every", "listed"


class TenantForm(forms.ModelForm):
    model_access = forms.ChoiceField(
        label="models",
        choices=[
            (EVERY_MODEL, "Every active model"),
            (LISTED_MODELS, "Only the models chosen below (none chosen: no model)"),
        ],
        initial=EVERY_MODEL,
        widget=forms.RadioSelect,
        # Left out (a script posting the form), models chosen mean "only those", none "every model".
        required=False,
    )

    # The model field's validator (tenants.cors) checks each origin when the form cleans the instance.
    cors_origins = OriginsField(
        label="CORS origins",
        required=False,
        help_text=Tenant._meta.get_field("cors_origins").help_text,
    )

    class Meta:
        model = Tenant
        fields = "__all__"  # the admin's get_fields picks the fields shown

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "model_access" in self.fields:
            self.fields["model_access"].initial = LISTED_MODELS if self.instance.models_restricted else EVERY_MODEL

    def allowed_models(self) -> list[Any] | None:
        """The model list as `tenant_update` takes it: None for every model, else those chosen (maybe none)."""
        chosen = list(self.cleaned_data.get("allowed_models") or [])
        access = self.cleaned_data.get("model_access") or (LISTED_MODELS if chosen else EVERY_MODEL)
        return None if access == EVERY_MODEL else chosen
