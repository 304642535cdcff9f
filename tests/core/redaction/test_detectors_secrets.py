"""Secrets as real pastes carry them (issue 10 section 2), grouped by why they were missed, and the
look-alikes that must stay untouched. Values are random-looking but fake."""

import pytest

from policyproxy.config.schema import RedactionSpec
from policyproxy.redaction.engine import Redactor


@pytest.fixture(scope="module")
def redactor():
    return Redactor(RedactionSpec())


def found(redactor, text):
    return [(s.detector, text[s.start:s.end]) for s in redactor.find(text)]


SESSION_TOKEN = ("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDx7kF2nP9qR3sT5uV7wX9yZ1aB3cD5eF7gH9iJ1kL3m"
                 "N5oP7qR9sT1uV3wX5yZ7aB9cD1eF3gH5iJ7kL9mN1oP3qR5sT7uV9wX1yZ3aB5cD7eF9gH1iJ3kL5mN7oP9qR1sT3uV5wX7yZ9aB1"
                 "cD3eF5gH7iJ9kL1mN3oP5qR7sT9uV1wX3yZ5aB7cD9eF1gH3iJ5kL7mN9oP1qR3sT5uV7wX9yZ1aB3cD5eF7gH9iJ1kL3mN5oP7q"
                 "R9sT1uV3wX5yZ7aB9cD1eF3gH5iJ7kL9mN1oP3qR5sT7uV9wX1yZ3aB5cD7eF9gH1iJ3kL5mN7oP9")


class TestSecretsNamedByTheirKey:
    """Config formats whose key says "secret" in a way the old keyword list did not know."""

    CASES = (
        ("dotenv APP_KEY base64", "APP_NAME=Laravel\nAPP_ENV=production\nAPP_KEY=base64:q3YtVj8m1pKx7ZfA2wLcR9sN4bH6dE0gT5uI8oP1yQk=\n",
         "base64:q3YtVj8m1pKx7ZfA2wLcR9sN4bH6dE0gT5uI8oP1yQk="),
        ("RAILS_MASTER_KEY", "$ cat config/master.key.env\nRAILS_MASTER_KEY=7f3c9a1e5b2d8046c1e9f7a3b5d20c84\n",
         "7f3c9a1e5b2d8046c1e9f7a3b5d20c84"),
        ("DD_APP_KEY", "export DD_API_KEY=$DD_KEY\nexport DD_APP_KEY=9b1e2c3d4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c\n",
         "9b1e2c3d4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"),
        ("docker config.json auth", '{\n  "auths": {\n    "https://index.docker.io/v1/": {\n      "auth": '
         '"ZGV2dXNlcjpTM2NyM3RQYXNzITIwMjQ="\n    }\n  }\n}', "ZGV2dXNlcjpTM2NyM3RQYXNzITIwMjQ="),
        (".npmrc _auth", "registry=https://npm.corp.example/\n_auth=ZGV2OnBhc3N3b3JkMTIz\nalways-auth=true\n",
         "ZGV2OnBhc3N3b3JkMTIz"),
        (".npmrc _authToken", "//registry.npmjs.org/:_authToken=9f2c4e6a-8b1d-4f3a-9c7e-5d2b8a6f4e1c\n",
         "9f2c4e6a-8b1d-4f3a-9c7e-5d2b8a6f4e1c"),
        (".netrc password", "machine api.heroku.com\n  login jane@example.com\n  password 4f9a8c7e-1b2d-4e6f-8a9c-0d1e2f3a4b5c\n",
         "4f9a8c7e-1b2d-4e6f-8a9c-0d1e2f3a4b5c"),
        ("curl -u", "$ curl -u admin:Xk9#mP2vLq7 https://jenkins.internal.example.com/api/json\n{\"jobs\": []}",
         "Xk9#mP2vLq7"),
        ("kubeconfig client-key-data", "users:\n- name: kubernetes-admin\n  user:\n    client-key-data: "
         "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJQkFBS0NBUUVBdjRr\n",
         "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJQkFBS0NBUUVBdjRr"),
        ("kubeconfig token", "users:\n- name: ci\n  user:\n    token: 8h3kd92hf0sk2l3d9f8g7h6j5k4l3m2n\n",
         "8h3kd92hf0sk2l3d9f8g7h6j5k4l3m2n"),
        ("Azure storage AccountKey", "DefaultEndpointsProtocol=https;AccountName=mystorageacct;AccountKey="
         "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJD==;EndpointSuffix=core.windows.net",
         "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJD=="),
        ("Azure Service Bus SharedAccessKey", "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName="
         "RootManageSharedAccessKey;SharedAccessKey=Kq9vW2xY7zA1bC3dE5fG7hI9jK1lM3nO5pQ7rS9tU1v=",
         "Kq9vW2xY7zA1bC3dE5fG7hI9jK1lM3nO5pQ7rS9tU1v="),
        ("Django SECRET_KEY with ()", "# settings.py\nSECRET_KEY = 'django-insecure-8x!(k)v@3#n$w^q&z*1p%r)t(y+u=i_o-a9s8d7f6g5'\n",
         "django-insecure-8x!(k)v@3#n$w^q&z*1p%r)t(y+u=i_o-a9s8d7f6g5"),
        ("AWS session token > 256 chars", f"[default]\naws_session_token = {SESSION_TOKEN}\n", SESSION_TOKEN),
        ("Java setProperty pair", 'System.setProperty("SONAR_TOKEN", "squ_5e8a2b9c7d4f1e3a6b0c8d2e4f6a1b3c5d7e9f0a");',
         "squ_5e8a2b9c7d4f1e3a6b0c8d2e4f6a1b3c5d7e9f0a"),
        ("PHP .= assignment", '$jfrogToken .= "jnujxdgjy7120d0qohlgnt91qoihqo5701wsnmq2c0frw11s9c";',
         "jnujxdgjy7120d0qohlgnt91qoihqo5701wsnmq2c0frw11s9c"),
        ("NuGet.config password", '<packageSourceCredentials><corp><add key="Username" value="ci" />'
         '<add key="ClearTextPassword" value="Wq8#zP3kLm9v" /></corp></packageSourceCredentials>', "Wq8#zP3kLm9v"),
        ("quoted lower-case password", 'resource "aws_db_instance" "db" {\n  password = "rootpasswdprod"\n}',
         "rootpasswdprod"),
        ("random letters under a token key", 'huggingfaceToken="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"',
         "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"),
        ("dotted token under a token key", "harness_token: sat.tdh1zl9s9yxppw46b6j2rn.xn9wfyuji77z2sy4g6rnvr34.zfs8u",
         "sat.tdh1zl9s9yxppw46b6j2rn.xn9wfyuji77z2sy4g6rnvr34.zfs8u"),
        ("Authorization: Basic short", "$ curl -H 'Authorization: Basic YnJvd3Nlcjo=' https://api.example.com/v1/items",
         "YnJvd3Nlcjo="),
    )

    @pytest.mark.parametrize(("text", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_masked_whole(self, redactor, text, value):
        values = [v for _, v in found(redactor, text)]
        assert value in values


class TestKubernetesSecrets:
    MANIFEST = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-user-pass\n  namespace: default\ntype: Opaque\n"
                "data:\n  # echo -n 'S!B*d$zDsb=' | base64\n  password: UyFCXCpkJHpEc2I9\n  username: YWRtaW4=\n"
                "stringData:\n  token: plain-text-value-7\n")

    def test_every_data_value_is_masked(self, redactor):
        values = [v for _, v in found(redactor, self.MANIFEST)]
        assert values == ["UyFCXCpkJHpEc2I9", "YWRtaW4=", "plain-text-value-7"]

    def test_a_configmap_is_left(self, redactor):
        configmap = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  log_level: debug\n"
                     "  greeting: aGVsbG8gd29ybGQ=\n  replicas: '3'\n")
        assert found(redactor, configmap) == []
        assert found(redactor, configmap.replace("ConfigMap", "Secret")) != []


class TestVendorFormats:
    """Formats from gitleaks' rule set that no rule covered (issue 10: SendGrid, Mailgun, Twilio, Discord,
    Teams/Power Automate, Stripe whsec_)."""

    CASES = (
        ("SendGrid", 'sg = SendGridAPIClient("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")',
         "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"),
        ("Mailgun", "requests.post(url, auth=(\"api\", \"key-3ax6xnjp29jd6fds4gc373sgvjxteol0\"))",
         "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"),
        ("Twilio auth token after its SID", 'from twilio.rest import Client\nclient = Client('
         '"AC3f9b2c7d1e8a4f6b0c5d9e2a7b1c4d8f", "9e4b7c2d1f8a3e6b5c0d9f2a7e1b4c8d")',
         "9e4b7c2d1f8a3e6b5c0d9f2a7e1b4c8d"),
        ("Discord webhook", "webhook: https://discord.com/api/webhooks/1134872360154923018/"
         "Xq7aTfS3pW9vL1mR0wZb8cY4dE6fH2jK0lM5nP7qR9sT1uV3wX5yZ7aB9cD1eF3gH5",
         "discord.com/api/webhooks/1134872360154923018/Xq7aTfS3pW9vL1mR0wZb8cY4dE6fH2jK0lM5nP7qR9sT1uV3wX5yZ7aB9cD1eF3gH5"),
        ("Teams webhook", "TEAMS_URL=https://contoso.webhook.office.com/webhookb2/7e0a1b2c-3d4e-5f60-7182-93a4b5c6d7e8@"
         "72f988bf-86f1-41af-91ab-2d7cd011db47/IncomingWebhook/4c8d2e6f9a1b3c5d7e9f0a2b4c6d8e0f/9b8a7c6d-5e4f",
         "webhook.office.com/webhookb2/7e0a1b2c-3d4e-5f60-7182-93a4b5c6d7e8@72f988bf-86f1-41af-91ab-2d7cd011db47/"
         "IncomingWebhook/4c8d2e6f9a1b3c5d7e9f0a2b4c6d8e0f/9b8a7c6d-5e4f"),
        ("Power Automate sig=", "POST https://prod-27.westus.logic.azure.com:443/workflows/4f2c8e1a9b7d/triggers/manual/"
         "paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Xq7aTfS3pW9vL1mR0wZb8cY4dE6fH2jK0l",
         "Xq7aTfS3pW9vL1mR0wZb8cY4dE6fH2jK0l"),
        ("Stripe whsec_ in CLI output", "> Ready! Your webhook signing secret is whsec_9aB3cD5eF7gH9iJ1kL3mN5oP7qR9sT1uV",
         "whsec_9aB3cD5eF7gH9iJ1kL3mN5oP7qR9sT1uV"),
        ("New Relic", "newrelic.ini: license = NRAK-H41QMZ6E7WQ8O4P2TIYZF6UAWDU", "NRAK-H41QMZ6E7WQ8O4P2TIYZF6UAWDU"),
        ("Notion", "NOTION_KEY is 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",
         "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"),
        ("Brevo (Sendinblue)", "apiKey: 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",
         "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"),
        ("1Password secret key", "Emergency kit: A3-ASWWYB-798JRY-LJVD4-23DC2-86TVM-H43EB",
         "A3-ASWWYB-798JRY-LJVD4-23DC2-86TVM-H43EB"),
        ("Telegram bot token", 'bot = Bot("7213808860:AAH1bjqpKKW3maRSPAxzIU-0v6xNuq2-NjM")',
         "7213808860:AAH1bjqpKKW3maRSPAxzIU-0v6xNuq2-NjM"),
        ("Mailchimp", "MAILCHIMP=343ea45721923ed956e2b38c31db76aa-us30", "343ea45721923ed956e2b38c31db76aa-us30"),
        ("unsigned JWT", "token eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.eyJuYW1lIjoiSm9lIiwic3RhdHVzIjoiZW1wbG95ZWUifQ",
         "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.eyJuYW1lIjoiSm9lIiwic3RhdHVzIjoiZW1wbG95ZWUifQ"),
        ("password compared in code", 'if (password == "Tr0ub4dor&3xyz") { login() }', "Tr0ub4dor&3xyz"),
        ("Slack refresh token", "refresh: xoxe-1-My0xLTMxNzcwMjQ0MTcxMy01MTU4MTUyNjkxNzE0LTUxODE4NDI0MDY3MzY",
         "xoxe-1-My0xLTMxNzcwMjQ0MTcxMy01MTU4MTUyNjkxNzE0LTUxODE4NDI0MDY3MzY"),
    )

    @pytest.mark.parametrize(("text", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_found(self, redactor, text, value):
        assert value in [v for _, v in found(redactor, text)]


class TestAwsPairs:
    """A bare 40-character secret is an AWS secret key when an access key id sits in the same text."""

    def test_credentials_csv(self, redactor):
        text = ("User name,Password,Access key ID,Secret access key,Console login link\n"
                "deploy-bot,,AKIAZ7PQ3LXRN4TW2KJD,Wx7pQ2vL9kT4nM8bR3cJ6hF1dS5gA0zY2uE7iO4w,https://1234.signin.aws\n")
        assert ("aws_secret_key", "Wx7pQ2vL9kT4nM8bR3cJ6hF1dS5gA0zY2uE7iO4w") in found(redactor, text)

    def test_cli_json_output(self, redactor):
        text = ('$ aws sts get-session-token\n{"Credentials": {"AccessKeyId": "ASIAZ7PQ3LXRN4TW2KJD",\n'
                '  "Whatever": "Wx7pQ2vL9kT4nM8bR3cJ6hF1dS5gA0zY2uE7iO4w"}}')
        assert ("aws_secret_key", "Wx7pQ2vL9kT4nM8bR3cJ6hF1dS5gA0zY2uE7iO4w") in found(redactor, text)

    def test_without_an_id_a_bare_40_chars_is_left(self, redactor):
        text = "cache key Wx7pQ2vL9kT4nM8bR3cJ6hF1dS5gA0zY2uE7iO4w computed"
        assert found(redactor, text) == []

    def test_a_git_sha_next_to_an_id_is_not_a_secret(self, redactor):
        text = "AKIAZ7PQ3LXRN4TW2KJD rotated in commit 9fceb02d0ae598e95dc970b74767f19372d61af8"
        assert [d for d, _ in found(redactor, text)] == ["aws_access_key"]


class TestGluedBoundaries:
    """Unambiguous fixed formats match even glued to neighbouring characters."""

    @pytest.mark.parametrize(("text", "detector", "value"), [
        ("xAKIAZ7PQ3LXRN4TW2KJD", "aws_access_key", "AKIAZ7PQ3LXRN4TW2KJD"),
        ("AKIAZ7PQ3LXRN4TW2KJD0", "aws_access_key", "AKIAZ7PQ3LXRN4TW2KJD"),
        ("id=AKIAZ7PQ3LXRN4TW2KJD;", "aws_access_key", "AKIAZ7PQ3LXRN4TW2KJD"),
        ("ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R_", "github_token", "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"),
        ("token_ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", "github_token", "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"),
        ("keyAIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "google_api_key", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"),
    ])
    def test_glued(self, redactor, text, detector, value):
        assert (detector, value) in found(redactor, text)


class TestPlaceholdersAreLeft:
    """Obvious stand-ins protect nothing; masking them only confuses the model."""

    @pytest.mark.parametrize("text", [
        "ANTHROPIC_API_KEY=sk-ant-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "SLACK_BOT_TOKEN=xoxb-your-bot-token",
        "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX",
        "OPENAI_API_KEY=sk-proj-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        'STRIPE_SECRET_KEY="sk_live_****************************"',
        "api_key: <your-api-key-here>",
        "password: ${{ secrets.DB_PASSWORD }}",
        "Authorization: Bearer YOUR_TOKEN_HERE",
    ])
    def test_left(self, redactor, text):
        assert found(redactor, text) == []

    def test_documentation_examples_are_still_masked(self, redactor):
        """Decision (README): AWS's, Stripe's and jwt.io's published examples look real and are cheap to
        mask, so they are masked like any value."""
        text = ("AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY card 4242 4242 4242 4242 "
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2"
                "MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
        assert [d for d, _ in found(redactor, text)] == ["aws_access_key", "aws_secret_key", "credit_card", "jwt"]


class TestSecretNamesCountsAndReferences:
    """Numbers under secret-sounding keys, the names of secrets and references to them are not secrets."""

    @pytest.mark.parametrize("text", [
        '{"model": "claude-opus-4", "max_tokens": 128000, "max_output_tokens": 64000, "token_budget": 32000}',
        "JWT_REFRESH_TOKEN_TTL_MS = 2592000000\nACCESS_TOKEN_EXPIRES_IN = 3600\nPASSWORD_MIN_LENGTH = 12",
        "spec:\n  tls:\n  - hosts: [app.example.com]\n    secretName: web-tls-9v4xk\n",
        "      valueFrom:\n        secretKeyRef:\n          name: db-credentials-7h2k9\n          key: password\n",
        "aws secretsmanager get-secret-value --secret-id "
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db/postgres-AbCdEf",
        "boto3.client('secretsmanager').get_secret_value(SecretId='prod/api/stripe-Xy12Ab')",
        'secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/jwt-9f8e7d"',
        "npm_package_version=4.12.0\nnpm_package_name=my-app\nnpm_package_dependencies_lodash=^4.17.21\n"
        "npm_config_user_agent=npm/10.2.4 node/v20.11.0 linux x64 workspaces/false",
        'class BasicAuth(namedtuple("BasicAuth", ["login", "password", "encoding"])):',
        "# token          = 1*tchar",
        "primary_key = id\ncache_key = f'user:{user_id}'\nsort_key: created_at",
        "login:\n  serviceAccountToken:\n    fn::secret: vault-path",
        "curl -u <user:password> https://test.com/endpoint",
        'password = "${aws_db_instance.default.password}"',
        '<add key="ClearTextPassword" value="%TestSourcePassword%" />',
        "    def _api_org_96726c78_4ae3_402f_b08b_7a78c6903d2a(self, method, url):",
        "https://indieweb.org/images/3/35/2018-250-xoxo-indieweb-1.jpg and xoxb-abcdef-abcdef",
        '        path="/organization/api_keys.retrieve",\n        span_route="/v1/organization/api_keys/{key_id}",',
        "    'APPSERVER-PASSWORD',\n    'APPSERVER-USERID',",
        '  "/properties/ClientToken",\n  "/properties/PreserveClientIp",',
        '{"NextToken": "3/PblzkiGhzjER3KHuQt2fmbPLF7cDYafjFMEoGn44ON", "ClientToken": "a1b2c3d4e5f6a7b8c9d0"}',
        '"AwsKmsKey": "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"',
        '    "AWS::IAM::AccessKey": "72c2d9dd90025459",',
        '        elif token == "#bygroup":',
    ])
    def test_left(self, redactor, text):
        assert found(redactor, text) == []
