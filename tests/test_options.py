"""The option table: documented, consistent with luigi.cfg and the podi_collectcells flags."""

import configparser
from pathlib import Path

import pytest

from workflows import options, settings

KINDS = {"switch", "path", "path_on", "int", "float", "str", "choice", "floats", "list", "multi"}


def test_every_option_is_documented_and_well_formed():
    names = set()
    for opt in options.OPTIONS:
        assert opt.name.isidentifier() and opt.name not in names
        names.add(opt.name)
        assert opt.kind in KINDS, opt.name
        assert len(opt.doc) > 15 and opt.doc.rstrip().endswith((".", ")")), opt.name
        assert opt.issue > 0, opt.name
        if opt.kind == "choice":
            assert opt.choices and (opt.default is None or opt.default in opt.choices)
        if opt.kind == "floats":
            assert opt.length > 0
        # the default survives a round trip through the luigi.cfg text form
        if opt.format(opt.default) not in ("", "no"):
            assert opt.parse(opt.format(opt.default)) == opt.default, opt.name


def test_spec_flags_are_all_defined():
    spec_flags = """cals bias dark flat bpm pupilghost fringe fringevectors gain nonlinearity crosstalk persistency
    wcs simplewcs tanwcs wcsoffset pointing dither target fixwcs photcalib autophotflat photflat illumcorr
    fitradialZP nonsidereal prep4sex indefval centralonly singleota selectota skipota keepcells trimcell
    techdata crj crjsigclip crjsigfrac crjobjlim crjsaturation crjmethod softbin fpack noclobber addfitskey
    plotformat nootalevelplots qasubdirs qasubdirname noqaplots timeout verbose ncpu""".split()
    for flag in spec_flags:
        assert options.option_for_flag(flag)


def test_luigi_cfg_reduction_section_maps_onto_options():
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parent.parent / "luigi.cfg")
    for key in cfg["reduction"]:
        assert key in options.OPTIONS_BY_NAME
    defaults = settings.reduction_options()
    assert defaults == options.ReductionOptions()
    assert defaults.crosstalk == "auto" and defaults.nonlinearity is None and defaults.plotformat == ("png",)


def test_parse_semantics():
    by = options.OPTIONS_BY_NAME
    assert by["bpm"].parse(None) == "auto" and by["bpm"].parse("/x/bpm") == "/x/bpm"
    assert by["crosstalk"].parse("no") is None  # QuickReduce could not turn it off
    assert by["wcsoffset"].parse("0.1,-0.2") == (0.1, -0.2)
    with pytest.raises(options.OptionError, match=r"-wcsoffset=1: expected 2"):
        by["wcsoffset"].parse("1")
    with pytest.raises(options.OptionError, match=r"-softbin=3: choose one of 2, 4, 8"):
        by["softbin"].parse("3")
    with pytest.raises(options.OptionError, match=r"-trimcell needs a value"):
        by["trimcell"].parse(None)
    assert by["fixwcs"].parse(None) is True


def test_collectcells_command_line():
    pos, opts, warns = options.parse_collectcells_args(["in/", "-1.5", "out.fits", "-dither=1,2"])
    assert pos == ["in/", "-1.5", "out.fits"]
    assert warns and "-dither" in warns[0]
    assert opts == options.ReductionOptions()
    with pytest.raises(options.OptionError, match="unknown option -nosuchflag"):
        options.parse_collectcells_args(["a", "b", "-nosuchflag"])
    _, focal, _ = options.parse_collectcells_args(["a", "b", "-fringe", "-pupilghost=pg.fits", "-fringevectors=fv/"])
    assert (focal.fringe, focal.pupilghost, focal.fringevectors) == ("auto", "pg.fits", "fv/")


def test_significant_options_select_by_family():
    o = options.ReductionOptions().replace(fixwcs=True, bias="auto")
    assert o.significant("FixWCS")["fixwcs"] is True
    assert "bias" in o.significant("DetrendOTA") and "bias" not in o.significant("FixWCS")
