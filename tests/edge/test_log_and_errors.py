"""edge.errors (exit code per error class) and edge.log (one handler per command run, -v / -q)."""

import argparse
import importlib
import logging

import pytest

from edge.errors import BackendError, EdgeError, GateFailed, InputError, cli_entry
from edge.log import add_log_flags, level_for

lib = logging.getLogger("convert.something")    # a library module's logger (edge/log.py's rule)
other = logging.getLogger("tf2onnx.something")  # another library's


def _command(log_level=logging.INFO, quiet_help=None):
    @cli_entry("edge-x", log_level=log_level)
    def main(argv):
        p = add_log_flags(argparse.ArgumentParser("edge-x"), quiet_help=quiet_help)
        p.add_argument("--fail", choices=["input", "edge", "gate", "backend"])
        args = p.parse_args(argv)
        lib.debug("debug line")
        lib.info("info line")
        lib.warning("warning line")
        lib.error("error line")
        other.info("chatter")
        error = {"input": InputError, "edge": EdgeError, "gate": GateFailed, "backend": BackendError}.get(args.fail)
        if error:
            raise error(f"{args.fail} failed\nsecond line")
        return 0

    return main


@pytest.mark.parametrize("fail, code", [("input", 2), ("edge", 2), ("gate", 1), ("backend", 3)])
def test_exit_code_per_error_class(capsys, fail, code):
    assert _command()(["-q", "-q", "--fail", fail]) == code
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"edge-x: error: {fail} failed second line"
    assert issubclass(BackendError, EdgeError) and issubclass(InputError, EdgeError)


def test_default_info_on_stdout_warnings_tagged_on_stderr(capsys):
    assert _command()([]) == 0
    out, err = capsys.readouterr()
    assert out == "info line\n"  # what print wrote before: the command's output
    assert err == "edge-x: WARNING: warning line\nedge-x: ERROR: error line\n"


@pytest.mark.parametrize("flags, out, err", [
    (["-v"], "debug line\ninfo line\n", ["WARNING", "ERROR"]),
    (["--verbose"], "debug line\ninfo line\n", ["WARNING", "ERROR"]),
    (["-q"], "", ["WARNING", "ERROR"]),
    (["-qq"], "", ["ERROR"]),
    (["--quiet", "--quiet"], "", ["ERROR"]),
    (["-v", "-q"], "info line\n", ["WARNING", "ERROR"])])
def test_verbose_and_quiet_move_the_level(capsys, flags, out, err):
    assert _command()(flags) == 0
    o, e = capsys.readouterr()
    assert o == out
    assert [ln.split(": ")[1] for ln in e.splitlines()] == err


def test_service_logs_everything_on_stderr_from_warning(capsys):
    main = _command(log_level=logging.WARNING)
    assert main([]) == 0
    o, e = capsys.readouterr()
    assert o == "" and e == "edge-x: WARNING: warning line\nedge-x: ERROR: error line\n"
    assert main(["-v"]) == 0
    o, e = capsys.readouterr()
    assert o == "" and e.splitlines()[0] == "edge-x: INFO: info line" and "debug" not in e
    assert main(["-vv"]) == 0
    e = capsys.readouterr().err
    assert "edge-x: DEBUG: debug line" in e and "chatter" not in e  # other libraries: WARNING at most


def test_own_quiet_keeps_its_first_meaning(capsys):
    main = _command(log_level=logging.WARNING, quiet_help="no table")
    assert main(["-q"]) == 0
    assert "WARNING: warning line" in capsys.readouterr().err  # -q: the command's own meaning only
    assert main(["-qq"]) == 0
    assert capsys.readouterr().err == "edge-x: ERROR: error line\n"


def test_other_libraries_stay_at_warning_and_levels_are_restored(capsys):
    before = (logging.getLogger().level, logging.getLogger("convert").level, len(logging.getLogger().handlers))
    assert _command()([]) == 0
    assert "chatter" not in capsys.readouterr().out
    assert (logging.getLogger().level, logging.getLogger("convert").level,
            len(logging.getLogger().handlers)) == before


def test_level_for():
    assert level_for(logging.INFO) == logging.INFO
    assert level_for(logging.INFO, verbose=3) == logging.DEBUG
    assert level_for(logging.WARNING, quiet=9) == logging.CRITICAL


@pytest.mark.parametrize("module", ["train.cli", "train.evaluate", "convert.cli", "bench.cli", "edge.capture.cli",
                                    "collect.cli", "edge.doctor"])
def test_every_command_has_verbose_and_quiet(capsys, module):
    main = importlib.import_module(module).main  # the console entry points of setup.cfg
    with pytest.raises(SystemExit) as e:
        main(["-v", "-q", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "-v, --verbose" in out and "-q, --quiet" in out


def test_parameter_names_become_flags_in_a_command(capsys):
    from edge.errors import param

    def fail():
        raise BackendError(f"{param('cuda_graph')} needs another backend (use {param('cuda_backend', 'cuda-python')}, "
                           f"or drop {param('cuda_graph')}); {param('engine', 'always')} failed, "
                           f"{param('max_batch', 0)}, {param('force', True)}; max batch stays")

    @cli_entry("edge-x")
    def main(argv):
        fail()

    assert main([]) == 3
    assert capsys.readouterr().err == ("edge-x: error: --cuda-graph needs another backend (use --cuda-backend "
                                       "cuda-python, or drop --cuda-graph); --engine always failed, --max-batch 0, "
                                       "--force; max batch stays\n")
    with pytest.raises(BackendError) as e:   # from Python the message keeps the parameter names
        fail()
    assert str(e.value) == ("cuda_graph needs another backend (use cuda_backend='cuda-python', or drop cuda_graph); "
                            "engine='always' failed, max_batch=0, force=True; max batch stays")


def test_a_command_names_a_parameter_by_its_own_flag_and_restores_the_naming(capsys):
    from edge.errors import param

    @cli_entry("edge-y", flags={"references": "--reference", "model": "MODEL"})
    def main(argv):
        assert param("max_batch") == "--max-batch"
        raise EdgeError(f"{param('references')} and {param('model')} disagree")

    assert main([]) == 2
    assert capsys.readouterr().err == "edge-y: error: --reference and MODEL disagree\n"
    assert param("references") == "references"   # after the command: Python's names again


def test_a_closed_stdout_stops_the_lines_quietly(capsys, monkeypatch):
    class Closed:
        writes = 0

        def write(self, text):
            Closed.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr("sys.stdout", Closed())
    assert _command()([]) == 0          # info line: stdout (closed); warning and error: stderr
    assert Closed.writes == 1 and capsys.readouterr().err.count("edge-x: ") == 2   # no "Logging error" report
