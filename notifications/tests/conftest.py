from notifications.tests.receiver import receiver  # noqa: F401 - the fixture, for every test of the app
