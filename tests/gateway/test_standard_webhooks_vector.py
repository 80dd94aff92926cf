"""The Standard Webhooks libraries' published signing example, checked against gateway/signing.py.

Source: github.com/standard-webhooks/standard-webhooks, `libraries/python/tests/test_webhooks.py`
(`test_sign_function`); the JavaScript, Go and other libraries' tests publish the same values.
"""

from __future__ import annotations

from gateway import signing

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_the_published_example_gives_the_published_signature() -> None:
    assert signing.sign(SECRET, MSG_ID, TIMESTAMP, PAYLOAD) == EXPECTED


def test_the_published_signature_verifies_alone_and_beside_an_asymmetric_one_and_an_old_key() -> None:
    assert signing.verify([SECRET], MSG_ID, TIMESTAMP, PAYLOAD, EXPECTED)
    # a sender rotating keys or also signing with ed25519 sends a space-separated list (spec, "Webhook headers")
    rotated = f"v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== {EXPECTED}"
    assert signing.verify([signing.new_secret(), SECRET], MSG_ID, TIMESTAMP, PAYLOAD, rotated)


def test_the_published_signature_is_refused_when_any_signed_part_changes() -> None:
    assert not signing.verify([SECRET], MSG_ID + "x", TIMESTAMP, PAYLOAD, EXPECTED)
    assert not signing.verify([SECRET], MSG_ID, TIMESTAMP + 1, PAYLOAD, EXPECTED)
    assert not signing.verify([SECRET], MSG_ID, TIMESTAMP, b'{"test":2432232314}', EXPECTED)
    assert not signing.verify([signing.new_secret()], MSG_ID, TIMESTAMP, PAYLOAD, EXPECTED)
    assert not signing.verify([SECRET], MSG_ID, TIMESTAMP, PAYLOAD, EXPECTED.replace("v1,", "v1a,"))
