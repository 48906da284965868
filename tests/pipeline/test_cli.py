"""The ``pipeline`` command itself (:mod:`audio_superres.pipeline.cli`): a settings error is one
line on stderr and exit status 2."""

from audio_superres.pipeline.cli import main


def test_cli_reports_settings_error_on_one_line_and_exits_2(tmp_path, capsys):
    code = main(["split", "--settings", str(tmp_path), "--set", "data.factor=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "error: --set data.factor: Input should be greater than or equal to 2"
