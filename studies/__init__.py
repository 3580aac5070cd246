"""The studies a user can run: `STUDIES` is the explicit registry (DESIGN §7.1)."""

from studies import digits, fashion_mnist, mnist
from studies.base import Budget, Study, StudyDefinitionError

STUDIES: dict[str, Study] = {
    mnist.STUDY.name: mnist.STUDY,
    fashion_mnist.STUDY.name: fashion_mnist.STUDY,
    digits.STUDY.name: digits.STUDY,
}


class UnknownStudyError(KeyError):
    """A study name that is not in `STUDIES`."""

    def __str__(self) -> str:
        return f"unknown study {self.args[0]!r}; choose one of {', '.join(STUDIES)}"


def get_study(name: str) -> Study:
    """The study called `name`, or `UnknownStudyError` naming the valid choices."""
    try:
        return STUDIES[name]
    except KeyError:
        raise UnknownStudyError(name) from None


__all__ = ["STUDIES", "Budget", "Study", "StudyDefinitionError", "UnknownStudyError", "get_study"]
