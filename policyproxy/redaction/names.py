"""The stable names of the built-in detectors, as used in config, events and block answers."""

SECRET_DETECTORS = (
    "private_key", "aws_access_key", "aws_secret_key", "github_token", "gitlab_token",
    "slack_token", "stripe_key", "openai_key", "anthropic_key", "google_api_key", "jwt",
    "url_credentials", "secret_assignment", "generic_secret", "vendor_token",
)
PII_DETECTORS = ("email", "phone", "us_ssn", "credit_card", "iban", "ip_address")
DETECTOR_NAMES = SECRET_DETECTORS + PII_DETECTORS
