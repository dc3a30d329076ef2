"""The podiflow and podi_collectcells commands (foundation part)."""

from workflows import cli

from .rawfactory import OBSID, write_ota


def test_podiflow_index_lists_exposures(tmp_path, capsys):
    night = tmp_path / "20130301"
    (night / OBSID).mkdir(parents=True)
    write_ota(night / OBSID, ota=33)
    assert cli.podiflow_main(["index", str(night), "--cache", str(tmp_path / "idx.json")]) == 0
    out = capsys.readouterr().out
    assert "night 20130301: 1 exposures, 0 unreadable" in out and OBSID in out and "odi_r" in out
    assert cli.podiflow_main(["index", str(tmp_path / "nope")]) == 2


def test_podiflow_options_lists_every_option(capsys):
    assert cli.podiflow_main(["options"]) == 0
    out = capsys.readouterr().out
    assert "-nonlinearity" in out and "-fixwcs" in out and "arrives with issue" in out


def test_collectcells_bad_input_is_named(tmp_path, capsys):
    missing = tmp_path / "o20130301T000000.0"
    assert cli.collectcells_main([str(missing), str(tmp_path / "out.fits")]) == 2
    assert f"{missing}: no such exposure folder" in capsys.readouterr().err
    assert cli.collectcells_main(["a", "b", "-nosuchflag"]) == 2
    assert "unknown option -nosuchflag" in capsys.readouterr().err
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    assert cli.collectcells_main(["a", "b", f"-persistency={blocker}"]) == 2
    assert f"-persistency={blocker}: {blocker} is a file, not a folder" in capsys.readouterr().err
