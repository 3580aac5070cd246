"""A resume that contradicts the stored record names the field and the flag, in a line a
person reads (issue 31, item 7: it printed two 9-key dicts in 652 characters)."""

from __future__ import annotations

import optuna
import pytest

from definitions.errors import UsageError
from optimizer.store.record import RECORD_VERSION, check_record, write_record

SPACE = {"width_range": [0.25, 1.0], "width_step": 0.125, "epr_lambda_range": [0.5, 50.0],
         "quantization_modes": ["epr", "int8"], "factorize_mode": "rule",
         "accuracy_floor": 0.2, "usable_accuracy": 0.5, "tflite_epr": True}


def _stored() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="s")
    write_record(study, {"version": RECORD_VERSION, "search_space": SPACE, "dataset": "d",
                         "family": "f", "data_source": "x", "split_seed": 0})
    return study


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("quantization_modes", ["float32"], "--quantization"),
    ("width_range", [0.5, 0.75], "--width-range"),
])
def test_another_space_on_resume_names_the_field_and_the_flag(field, value, flag):
    with pytest.raises(UsageError) as refused:
        check_record(_stored(), {"search_space": {**SPACE, field: value}},
                     keys={"search_space"})
    message = str(refused.value)
    assert message == (f"study 's': its search_space differs: {field} is {SPACE[field]}, "
                       f"but now it would be {value}; drop {flag} (the stored one is used), "
                       "or start a new --run-dir")
    assert len(message) < 200


def test_a_changed_definition_range_keeps_the_definitions_advice():
    with pytest.raises(UsageError) as refused:
        check_record(_stored(), {"search_space": {**SPACE, "epr_lambda_range": [1.0, 50.0]}},
                     keys={"search_space"})
    assert ("epr_lambda_range is [0.5, 50.0], but now it would be [1.0, 50.0]; the study "
            "definition's ranges changed") in str(refused.value)
