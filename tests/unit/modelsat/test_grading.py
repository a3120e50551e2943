"""Answer extraction and grading of aptitude items on live models (modelsat.grading)."""

import pytest

from modelsat.errors import DataError
from modelsat.grading import (
    AptitudeItem,
    check_gradable,
    extract_answer,
    format_prompt,
    grade_response,
    grading_kind,
)

MC = AptitudeItem("q/1", "physics", "mmlu_pro", "What is g?\nA. 1\nB. 9.8\nC. 3\nD. 4", "B")
NUM = AptitudeItem("q/2", "gsm8k", "gsm8k", "Tom has 3 apples and buys 15 more. How many?", "18")


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Let's think. The answer is (B).", "B"),
        ("the answer is B", "B"),
        ("The answer is (A). Wait, no: the answer is (B).", "B"),
        ("Answer: B", "B"),
        ("answer:(C)", "C"),
        ("B", "B"),
        ("(B)", "B"),
        (" b. ", None),  # lower-case bare text is not an option letter
        ("\\boxed{B}", "B"),
        ("The answer is (Z)", None),  # not one of the options A-D
        ("I am not sure.", None),
        ("", None),
    ],
)
def test_choice_extraction(response, expected):
    assert extract_answer(response, "choice", list("ABCD")) == expected


@pytest.mark.parametrize(
    "response, expected",
    [
        ("3 + 15 = 18. The answer is 18.", "18"),
        ("The answer is $1,234.", "$1,234"),
        ("Answer: -2.5", "-2.5"),
        ("so \\boxed{18}", "18"),
        ("first 3, then 15, total 18", "18"),  # the last number when no answer phrase
        ("The answer is 3/4", "3/4"),
        ("no idea", None),
    ],
)
def test_number_extraction(response, expected):
    assert extract_answer(response, "number") == expected


def test_grading_of_choice_and_number():
    assert grade_response(MC, "choice", "The answer is (B)").score == 1.0
    assert grade_response(MC, "choice", "The answer is (C)").score == 0.0
    g = grade_response(MC, "choice", "I do not know")
    assert (g.score, g.answer, g.parsed) == (0.0, None, False)
    assert grade_response(NUM, "number", "The answer is 18.").score == 1.0
    assert grade_response(NUM, "number", "The answer is 18.0").score == 1.0
    assert grade_response(NUM, "number", "The answer is 17").score == 0.0
    frac = AptitudeItem("q/3", "math", "math_l5", "x?", "\\frac{3}{4}")  # ZeroEval first-number rule: 3
    assert grading_kind(frac) == "number"
    assert grade_response(frac, "number", "The answer is 3").score == 1.0
    assert (
        grade_response(AptitudeItem("q", "t", "b", "x", "0.75"), "number", "The answer is 3/4").score == 1.0
    )


def test_grading_kinds_and_ungradable_items():
    assert grading_kind(MC) == "choice"
    assert grading_kind(NUM) == "number"
    code = AptitudeItem("q/4", "mbpp", "mbpp", "Write a function.", None)
    text = AptitudeItem("q/5", "qa", "qa", "Capital of France?", "Paris")
    letter_without_options = AptitudeItem("q/6", "t", "b", "Pick a letter", "B")
    assert grading_kind(code) is None and grading_kind(text) is None
    assert grading_kind(letter_without_options) is None
    assert check_gradable([MC, NUM]) == {"q/1": "choice", "q/2": "number"}
    with pytest.raises(DataError, match=r"2 of 3 aptitude items cannot be graded.*'q/4'.*--engine recorded"):
        check_gradable([MC, code, text])


def test_prompt_keeps_the_instruction_and_adds_an_answer_format():
    p = format_prompt(MC, "choice")
    assert p.startswith(MC.prompt + "\n\n") and '"The answer is (X)"' in p
    assert '"The answer is N"' in format_prompt(NUM, "number")
    with pytest.raises(ValueError, match="allowed: choice, number"):
        format_prompt(MC, "essay")
