# Tenant admins become memberships with a role (admin, member, viewer): every existing admin keeps the
# tenant as an admin membership, then the admins field goes. Backwards, admin memberships become admins
# again; members and viewers have no place in the old schema and are dropped.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

ADMIN = "admin"


def admins_to_memberships(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    TenantMembership = apps.get_model("tenants", "TenantMembership")
    pairs = Tenant.admins.through.objects.values_list("tenant_id", "user_id").order_by("pk")
    TenantMembership.objects.bulk_create(
        [TenantMembership(tenant_id=tenant_id, user_id=user_id, role=ADMIN) for tenant_id, user_id in pairs]
    )


def memberships_to_admins(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    TenantMembership = apps.get_model("tenants", "TenantMembership")
    pairs = TenantMembership.objects.filter(role=ADMIN).values_list("tenant_id", "user_id").order_by("pk")
    Tenant.admins.through.objects.bulk_create(
        [Tenant.admins.through(tenant_id=tenant_id, user_id=user_id) for tenant_id, user_id in pairs]
    )


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0007_queue_policy'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TenantMembership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('admin', 'admin: keys, members, and the management API'), ('member', 'member: keys'), ('viewer', 'viewer: reads usage and keys')], default='member', max_length=6)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='tenants.tenant')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='tenant_memberships', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['pk'],
                'constraints': [models.UniqueConstraint(fields=('tenant', 'user'), name='one_membership_per_tenant_user')],
            },
        ),
        migrations.RunPython(admins_to_memberships, memberships_to_admins),
        migrations.RemoveField(
            model_name='tenant',
            name='admins',
        ),
    ]
