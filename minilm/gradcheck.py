"""The first home of minilm.verify.gradcheck, kept so that ``from minilm.gradcheck import check_module``
still works (DESIGN.md's public API); the code and its explanation live in minilm/verify/gradcheck.py."""

from minilm.verify.gradcheck import GradcheckReport, check_module, numerical_gradient, rel_error  # noqa: F401
