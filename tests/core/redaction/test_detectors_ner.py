"""The optional spaCy detectors (``redaction.ner_model``): a pipeline the test builds itself (a blank
English pipeline with an entity ruler), saved to disk and named in the config, as an operator would."""

import dataclasses

import pytest

from policyproxy.config.schema import RedactionSpec
from policyproxy.reasons import RedactionAction
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.placeholders import Vaults

spacy = pytest.importorskip("spacy")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([
        {"label": "PERSON", "pattern": [{"LOWER": "zhang"}, {"LOWER": "wei"}]},
        {"label": "PERSON", "pattern": [{"LOWER": "priya"}, {"LOWER": "raman"}]},
        {"label": "FAC", "pattern": [{"LOWER": "baker"}, {"LOWER": "street"}]},
        {"label": "GPE", "pattern": [{"LOWER": "london"}]},
    ])
    path = tmp_path_factory.mktemp("ner") / "pipeline"
    nlp.to_disk(path)
    return str(path)


def found(redactor, text):
    return [(s.detector, text[s.start:s.end]) for s in redactor.find(text)]


def test_names_in_prose_that_no_pattern_sees(model):
    text = "I spoke with zhang wei yesterday and he will call priya raman about the outage at baker street."
    assert found(Redactor(RedactionSpec()), text) == []            # the model-free detectors cannot know
    ner = Redactor(dataclasses.replace(RedactionSpec(), ner_model=model))
    assert found(ner, text) == [("person_name", "zhang wei"), ("person_name", "priya raman"),
                                ("street_address", "baker street")]


def test_code_and_places_without_a_number_are_not_given_to_the_model(model):
    ner = Redactor(dataclasses.replace(RedactionSpec(), ner_model=model))
    code = "zhang_wei = lookup(name='zhang wei')  # {\"id\": 1}"
    assert found(ner, code) == []
    assert found(ner, "The team in london shipped the release on time today.") == []


def test_masked_and_restored_like_any_value(model):
    ner = Redactor(dataclasses.replace(RedactionSpec(), ner_model=model))
    vault = Vaults(b"k" * 32).for_scope("c")
    out = ner.redact_text("Please ask zhang wei to review the pull request today.", vault).text
    assert "zhang wei" not in out and "[[PERSON_NAME_" in out
    token = out.split("ask ", 1)[1].split(" to", 1)[0]
    assert vault.value(token) == "zhang wei"


def test_turned_off_with_its_detectors(model):
    spec = dataclasses.replace(RedactionSpec(), ner_model=model, detectors=(
        ("person_name", RedactionAction.OFF), ("street_address", RedactionAction.OFF)))
    assert found(Redactor(spec), "I spoke with zhang wei yesterday about the release plan.") == []


def test_config_names_the_model(tmp_path, model):
    from policyproxy.config import load_settings

    config = tmp_path / "c.toml"
    config.write_text(f'[permissions.p.network.redaction]\nner_model = "{model}"\n')
    spec = load_settings(config, env={"POLICYPROXY_HOME": str(tmp_path)}).network.redaction
    assert spec.ner_model == model
