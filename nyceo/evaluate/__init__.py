"""Evaluation of a month's maps against reference labels (issue 11).

``run_evaluate(config, month, adapters=None, references=None)`` (nyceo/evaluate/contract.py) is the
entry point; ``STAGE`` registers it in the stage contract. See docs/ARCHITECTURE.md, "evaluate".
"""

from nyceo.evaluate.reference import EvaluateError

__all__ = ["EvaluateError"]
