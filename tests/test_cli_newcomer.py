"""What a first-time user of the command line ran into: exit statuses, messages, layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlspolicy.cli import main


def test_lint_reports_a_broken_file_like_check(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[global]\ntls = "requried"\ntls_verify = "nope"\n')
    assert main(["check", str(broken)]) == 1
    capsys.readouterr()
    # Errors in the file are a finding (1), as in check, and the summary counts them.
    assert main(["lint", str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "2 errors, 0 warnings\n"
    assert "requried" in captured.err and "nope" in captured.err
    # A usage error stays 2.
    assert main(["lint"]) == 2


@pytest.mark.parametrize("command", ["resolve", "discover"])
def test_a_missing_domain_is_named_alone(command: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: DOMAIN\n" in err
    assert "FILE" not in err.splitlines()[-1]
