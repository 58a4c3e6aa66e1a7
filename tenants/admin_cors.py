"""The tenant form's CORS origins box: one origin per line, rather than the JSON list the column holds."""

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


class TenantForm(forms.ModelForm):
    # The model field's validator (tenants.cors) checks each origin when the form cleans the instance.
    cors_origins = OriginsField(
        label="CORS origins",
        required=False,
        help_text=Tenant._meta.get_field("cors_origins").help_text,
    )

    class Meta:
        model = Tenant
        fields = "__all__"  # the admin's get_fields picks the fields shown
