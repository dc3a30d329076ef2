"""The one typed definition of every reduction option (docs/architecture.md).

Every option has a name, a kind, a default, a meaning, the ``podi_collectcells`` flag that sets it, and the
task families whose products it shapes (and therefore whose target identity it enters). ``luigi.cfg``
(section ``[reduction]``), task parameters and the ``podi_collectcells`` flags all map onto this table;
nothing else parses ``sys.argv``.

Kinds
-----
``switch``
    Off unless given. ``-flag`` -> True.
``path``
    A step that is off unless given. ``-flag`` -> ``"auto"`` (the mastercals default); ``-flag=x`` -> x
    (a file, a folder or a comma list, resolved like QuickReduce's ``check_filename_directory``);
    ``-flag=no`` -> False, off even where another option (``-cals``) would switch it on (None = not given).
``path_on``
    A step that is on by default (``"auto"``); ``-flag=x`` chooses the file; ``-flag=no`` turns it off
    (QuickReduce could not turn crosstalk off: docs/quickreduce.md, 'Switching crosstalk off').
``int``, ``float``, ``str``
    A value; ``-flag=value``.
``choice``
    One of ``choices``.
``floats``
    A comma-separated list of numbers of fixed length ``length`` (e.g. ``-wcsoffset=dra,ddec``).
``list``
    A comma-separated list of strings (e.g. ``-selectota=33,34``); repeated flags append.
``multi``
    A repeatable flag whose every value is kept whole (e.g. ``-addfitskey=KEY,value``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from podisteps.errors import PodiflowError

__all__ = [
    "Option",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "ReductionOptions",
    "OptionError",
    "parse_collectcells_args",
    "option_for_flag",
    "REJECTED_FLAGS",
]


class OptionError(PodiflowError, ValueError):
    """A bad option name or value; the message names the option."""


@dataclass(frozen=True)
class Option:
    """One reduction option.

    Attributes
    ----------
    name : str
        Python identifier (``luigi.cfg`` key in ``[reduction]``, task parameter, attribute).
    kind : str
        See the module docstring.
    default : Any
        Default value (already parsed).
    doc : str
        What it does, in a sentence or two, with units.
    flag : str
        The ``podi_collectcells`` flag without the leading dash (default: ``name``).
    shapes : tuple of str
        Task families whose products depend on it.
    issue : int
        The issue that implements the step. Options whose step is not built are rejected by the
        command line with a clear message (``OptionError``) until ``available`` is True.
    available : bool
        Whether the step behind this option is implemented.
    choices : tuple of str
        Allowed values for ``choice`` options.
    length : int
        Number of values for ``floats`` options.
    aliases : tuple of str
        Further flags meaning the same option.
    deprecated : str
        If set, the flag is accepted with this warning and has no effect.
    bare : Any
        For ``int``/``float`` options: the value of the flag given without ``=value`` (None: a value is needed).
    """

    name: str
    kind: str
    default: Any
    doc: str
    shapes: tuple = ()
    issue: int = 0
    available: bool = False
    flag: str = ""
    choices: tuple = ()
    length: int = 0
    aliases: tuple = ()
    deprecated: str = ""
    bare: Any = None

    @property
    def cli_flag(self) -> str:
        """The flag as typed on the ``podi_collectcells`` command line, with its dash."""
        return "-" + (self.flag or self.name)

    def parse(self, text: str | bool | None) -> Any:
        """Parse a value given on the command line or in ``luigi.cfg``.

        Parameters
        ----------
        text : str, bool or None
            The text after ``=``; None or True when the flag was given without a value.

        Raises
        ------
        OptionError
            If the value does not fit the option's kind.
        """
        where = self.cli_flag
        if self.kind == "switch":
            if text in (None, True, "", "true", "True", "yes", "1"):
                return True
            if text in (False, "false", "False", "no", "0"):
                return False
            raise OptionError(f"{where} takes no value (got {text!r})")
        if self.kind in ("path", "path_on"):
            if text in (None, True, "", "auto", "yes", "true"):
                return "auto"
            if text in (False, "no", "none", "false", "off"):
                # path: False = switched off even where -cals would imply it; None = not given
                return False if self.kind == "path" else None
            return str(text)
        if text in (None, True, "") and self.bare is not None:
            return self.bare
        if text in (None, True, ""):
            raise OptionError(f"{where} needs a value ({self.doc})")
        text = str(text).strip()
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
            if self.kind == "floats":
                values = tuple(float(v) for v in text.split(","))
                if len(values) != self.length:
                    raise ValueError(f"expected {self.length} comma-separated numbers")
                return values
        except ValueError as exc:
            raise OptionError(f"{where}={text}: {exc}") from None
        if self.kind == "choice":
            if text not in self.choices:
                raise OptionError(f"{where}={text}: choose one of {', '.join(self.choices)}")
            return text
        if self.kind == "list":
            return tuple(v.strip() for v in text.split(",") if v.strip())
        if self.kind == "multi":  # one value per line (the text form of several, see format())
            return tuple(v for v in text.split("\n") if v)
        return text

    def format(self, value: Any) -> str:
        """Format a parsed value back into the text form ``parse`` accepts."""
        if value is None:
            return "no" if self.kind == "path_on" else ""
        if value is False and self.kind == "path":
            return "no"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return ("\n" if self.kind == "multi" else ",").join(str(v) for v in value)
        return str(value)


#: Every task family whose options shape a final MEF: the ``options`` of CollectCells, and of the tasks that
#: ask for it (QAPlots, ReduceExposure, podi_collectcells), so that they all name the same product.
MEF_FAMILIES = ("DetrendOTA", "FocalPlaneCorrections", "OTACatalog", "FixWCS", "PhotCalib", "CollectCells")

# Task families (the products an option can shape).
_DETREND = ("DetrendOTA",)
_FOCAL = ("FocalPlaneCorrections", "CorrectedOTA")
_CAT = ("OTACatalog",)
_WCS = ("FixWCS",)
_PHOT = ("PhotCalib",)
_MEF = ("CollectCells",)
_QA = ("QAPlots",)

OPTIONS: tuple[Option, ...] = (
    # ---- calibration inputs and detrending (issue 5, masters issue 6)
    Option("cals", "str", None, "Folder(s) with master bias/dark/flat (and techdata, illumination) "
           "files in QuickReduce's names; a comma list means the first folder that has the file.",
           _DETREND, 6, available=True),
    Option("bias", "path", None, "Subtract the master bias (bias_bin<B>.fits); a file or folder "
           "overrides -cals; 'no' turns it off, also under -cals.", _DETREND, 5, available=True),
    Option("dark", "path", None, "Subtract the master dark (dark_yes_bin<B>.fits, ADU/s) scaled by "
           "the exposure time; a file or folder overrides -cals; 'no' turns it off, also under -cals.",
           _DETREND, 5, available=True),
    Option("flat", "path", None, "Divide by the master flat, searching tflat, dflat, flat "
           "(<type>_<FILTER>_bin<B>.fits); a file or folder overrides -cals; 'no' turns it off, also under -cals.",
           _DETREND, 5, available=True),
    Option("masters", "list", (), "Calibrations built from the night's own raw frames by the DAG "
           "(comma list of bias, dark, flat); an explicit -bias/-dark/-flat or -cals file wins.",
           _DETREND, 6, available=True),
    Option("mincalframes", "int", 2, "Fewest input frames a night master may be built from.", (), 6, available=True),
    Option("calwindow", "int", 3, "With -masters: when the exposure's own night has too few frames of a kind, "
           "use the nearest night within this many nights (0 = own night only; earlier nights win ties).",
           (), 6, available=True),
    Option("flatghost", "path", None, "With -masters: remove the pupil ghost from the night's master flats "
           "(docs/masters.md, 'Flat'): per flat frame the ghost template's centre and scale are fitted as for -pupilghost and "
           "template x scale (in flat units) is subtracted before combining; bare flag = -pupilghost's default "
           "template (mastercals history, else the night's own PupilGhostTemplate), or the file/folder given.",
           _DETREND, 9, available=True),
    Option("mastercals", "str", None, "A mastercals tree in QuickReduce's layout (e.g. the mastercals/ folder of "
           "a QuickReduce checkout) instead of [podiflow] mastercals_dir: crosstalk, non-linearity, canned WCS "
           "and BPM regions by MJD and layout.", (), 19, available=True),
    Option("keepcalframes", "switch", False, "Keep the detrended calibration frames after their master "
           "is made (by default they are deleted so a night fits on disk).", (), 6, available=True),
    Option("illumcorr", "path", None, "Divide by the illumination correction "
           "illumination__<FILTER>_bin<B>.fits.", _DETREND, 5, available=True),
    Option("overscan", "choice", "scalar", "Overscan model: 'scalar' = median of the overscan block "
           "per cell (QuickReduce); 'rowwise' = a smoothed row-by-row overscan; 'none'.",
           _DETREND, 5, choices=("scalar", "rowwise", "none"), available=True),
    Option("crosstalk", "path_on", "auto", "Crosstalk correction with the inverse matrix per cell row "
           "(on by default; a file or folder chooses the matrix, 'no' turns it off).", _DETREND, 5, available=True),
    Option("nonlinearity", "path", None, "Apply the per-cell non-linearity d + c2 d^2 + c3 d^3 "
           "(table from the mastercals history by MJD and layout, or the file/folder given).",
           _DETREND, 5, available=True),
    Option("gain", "choice", None, "Gain normalisation: 'relative' (RELATIVE_GAIN of the "
           "non-linearity table), 'header' (cell GAIN, to electrons), 'techdata' (per-cell gain "
           "from a TECHDATA file); the bare flag means relative with -nonlinearity, else header.",
           _DETREND, 5, choices=("relative", "header", "techdata", "auto"), available=True),
    Option("techdata", "path", None, "Per-cell gain and read noise from a TECHDATA file "
           "techdata_<type>_<FILTER>_bin<B>.fits (used by -gain=techdata and the GAINX/RDNOISE cards): "
           "a file or folder; 'from_flat'/'from_bias' = the folder of the flat/bias in use; bare or 'auto' = "
           "the -cals folders, else the night's own photon-transfer TechData task.", _DETREND, 6,
           available=True),
    Option("bpm", "path", None, "Mask bad-pixel regions from ds9 region files bpm_xyNN.reg "
           "('auto' = the mastercals tree; a single file applies to every OTA).", _DETREND, 5, available=True),
    Option("persistency", "path_on", "auto", "Mask the persistence of earlier exposures' saturated "
           "pixels within the window (on by default, through the DAG's saturation catalogues; 'no' turns "
           "it off; a folder also shares QuickReduce-format *.saturated.fits catalogues there).",
           _DETREND, 5, available=True),
    Option("persistency_window", "float", 600.0, "Persistency window after the end of an earlier "
           "exposure, seconds.", _DETREND, 5, available=True),
    Option("keepcells", "str", None, "Keep broken/video cells: bare flag = all; 'most' = all but dead "
           "and floated cells; or a list of OTA.cxcy ids.", _DETREND, 5, available=True),
    Option("trimcell", "int", 0, "Trim this many pixels off every edge of each cell.", _DETREND, 5, available=True),
    Option("crj", "int", 0, "Cosmic-ray rejection with L.A.Cosmic, this many iterations (0 = off).",
           _DETREND, 5, available=True),
    Option("crjsigclip", "float", 5.0, "L.A.Cosmic detection limit, sigma.", _DETREND, 5, available=True),
    Option("crjsigfrac", "float", 0.3, "L.A.Cosmic neighbour detection fraction.", _DETREND, 5, available=True),
    Option("crjobjlim", "float", 5.0, "L.A.Cosmic contrast limit against stars.", _DETREND, 5, available=True),
    Option("crjsaturation", "float", 55000.0, "Saturation level for L.A.Cosmic, ADU.", _DETREND, 5, available=True),
    Option("crjmethod", "choice", "cy", "Cosmic-ray implementation (kept for compatibility; podiflow "
           "always uses a compiled L.A.Cosmic).", _DETREND, 5, choices=("cy", "py"), available=True),
    Option("photflat", "path", None, "Divide by the photometric flat photflat_<FILTER>_bin<B>.fits (one "
           "OTAxy.SCI image per OTA): a file, a folder holding it, or bare/'auto' = the -cals folders.",
           _DETREND, 8, available=True),
    # ---- WCS (issue 5 attaches the canned distortion, issue 7 solves it)
    Option("wcs", "path_on", "auto", "Canned distortion WCS: 'auto' = the mastercals history by MJD; "
           "a file or folder; 'plain' = no distortion, CRPIX from the OTA position; 'no' keeps the "
           "raw header WCS.", _DETREND, 5, available=True),
    Option("simplewcs", "switch", False, "Use a plain RA---TAN WCS without distortion terms.",
           _DETREND, 7, available=True),
    Option("tanwcs", "switch", False, "After attaching the distortion, label CTYPE TAN (PV cards kept).",
           _DETREND, 7, available=True),
    Option("wcsoffset", "floats", None, "Offset added to the pointing, degrees (dRA, dDec); the RA "
           "offset is divided by cos(Dec).", _DETREND, 7, length=2, aliases=("pointing",), available=True),
    Option("dither", "floats", None, "Defunct in QuickReduce: accepted with a warning, no effect.",
           (), 7, length=2, deprecated="-dither has no effect (defunct in QuickReduce too)"),
    Option("target", "str", None, "Replace the header pointing by 'ra,dec' (sexagesimal or degrees).",
           _DETREND, 7, available=True),
    Option("nonsidereal", "str", None, "Non-sidereal tracking 'dra,ddec,ref': arcsec/hour "
           "(dRA*cos Dec, dDec), ref an MJD or a FITS file whose MJD-OBS is used; FixWCS moves every "
           "OTA's CRVAL by the motion from ref to MJD-OBS.", _WCS, 7, available=True),
    Option("fixwcs", "switch", False, "Source catalogues and astrometric calibration against the "
           "reference catalogue.", _WCS + _CAT, 7, available=True),
    Option("wcscatalog", "str", "auto", "Reference catalogue for astrometry: a file, a sharded folder "
           "with an index, or 'auto' ([podiflow] refcat).", _WCS, 7, available=True),
    # ---- focal-plane corrections (issue 9)
    Option("pupilghost", "path", None, "Pupil-ghost removal (template by filter-arm level from the "
           "mastercals history, or the file/folder given).", _FOCAL, 9, available=True),
    Option("fringe", "path", None, "Fringe removal (template from the mastercals history, or the "
           "file/folder given).", _FOCAL, 9, available=True),
    Option("fringevectors", "str", None, "Folder of fringe vectors fringevectors__<FILTER>__OTAnn.reg.",
           _FOCAL, 9, available=True),
    # ---- photometry (issue 8)
    Option("photcalib", "switch", False, "Photometric zero point against the reference catalogue "
           "(needs -fixwcs).", _PHOT, 8, available=True),
    Option("photcatalog", "str", "auto", "Reference catalogue for photometry, as -wcscatalog: a file, a sharded "
           "folder with an index, or 'auto' ([podiflow] refcat).", _PHOT, 8, available=True),
    Option("photmatchradius", "float", 2.0, "Match radius for photometric calibration, arcsec.",
           _PHOT, 8, available=True),
    Option("fitradialZP", "switch", False, "Fit the radial trend of the zero point (RADZP_*; task RadialZP).",
           _PHOT, 8, available=True),
    Option("autophotflat", "switch", False, "Build a photometric flat from the zero-point residuals (task "
           "PhotFlat, QuickReduce's photflat format), apply it and calibrate again (AutoPhotCalib); implies "
           "-photcalib.", _PHOT, 8, available=True),
    # ---- final MEF (issue 10)
    Option("prep4sex", "switch", False, "Undefined pixels become -1e31 in the final MEF (header "
           "inheritance still happens, unlike QuickReduce).", _MEF, 10, available=True),
    Option("indefval", "float", None, "Value for undefined pixels in the final MEF (default NaN; "
           "overrides -prep4sex).", _MEF, 10, available=True),
    Option("softbin", "choice", None, "Software-bin the output by 2, 4 or 8: the mean of the defined pixels "
           "of each block (ADU/px kept), WCS and catalogue pixel columns rescaled.", _MEF, 10,
           choices=("2", "4", "8"), available=True),
    Option("fpack", "switch", False, "Write the final MEF Rice-compressed (.fits.fz; image extensions "
           "RICE_1, quantize_level 4).", _MEF, 10, available=True),
    Option("maskext", "switch", False, "Add OTAxy.MASK extensions (uint16 mask bits, docs/formats.md, "
           "'Per-OTA products') after the OTAxy.SCI ones.", _MEF, 10, available=True),
    Option("addfitskey", "multi", (), "Add a primary keyword 'KEY,value' (repeatable; KEY 1-8 characters "
           "A-Z 0-9 - _; a quoted value stays a string, else numbers and T/F are typed).", _MEF, 10, available=True),
    Option("centralonly", "switch", False, "pODI: reduce only the central 3x3 OTAs.", _MEF, 10, available=True),
    Option("singleota", "int", None, "Reduce only this OTA.", _MEF, 10, available=True),
    Option("selectota", "list", (), "Reduce only these OTAs (comma list).", _MEF, 10, available=True),
    Option("skipota", "list", (), "Do not reduce these OTAs (comma list).", _MEF, 10, available=True),
    Option("noclobber", "switch", False, "Do not replace an existing output file.", (), 10, available=True),
    # ---- QA (issue 11)
    Option("noqaplots", "switch", False, "Make no QA plots.", _QA, 11, available=True),
    Option("plotformat", "list", ("png",), "QA plot formats (comma list of matplotlib formats: png, pdf, "
           "svg, ...).", _QA, 11, available=True),
    Option("nootalevelplots", "switch", False, "No per-OTA QA plots (only the focal-plane ones).", _QA, 11,
           available=True),
    Option("qasubdirs", "switch", False, "Put QA plots in a QA/ folder beside the output: QA/<name>.<fmt>, "
           "per OTA QA/<name>/OTAnn.<fmt> (QA/<output stem>/... when the output's folder holds other "
           "outputs).", _QA, 11, available=True),
    Option("qasubdirname", "str", None, "Name of the QA folder instead of QA (implies -qasubdirs).", _QA, 11,
           available=True),
    # ---- run control
    Option("ncpu", "int", os.cpu_count() or 1, "Number of Luigi worker processes (default: the cores).", (), 10, available=True),
    Option("timeout", "float", None, "Abort the whole run after this many seconds (bare flag: 900; "
           "default: no limit); exit code 1, no process left behind.", (), 10, available=True, bare=900.0),
    Option("scheduler", "str", None, "A central luigid 'host:port' (port default 8082) instead of the "
           "local scheduler.", (), 10, available=True),
    Option("bgmode", "switch", False, "Background mode: no banner.", (), 10, available=True),
    Option("update_persistency_only", "switch", False, "Defunct in QuickReduce: accepted with a warning.",
           (), 10, available=True,
           deprecated="-update_persistency_only has no effect (parsed but unused in QuickReduce too)"),
    Option("wipecells", "str", None, "Used by QuickReduce's template builders, not by collectcells.",
           (), 10, available=True, deprecated="-wipecells has no effect on podi_collectcells (template builders only)"),
    Option("verbose", "switch", False, "Print the resolved options.", (), 10, available=True),
)

OPTIONS_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
_FLAGS: dict[str, Option] = {}
for _o in OPTIONS:
    for _f in (_o.flag or _o.name,) + _o.aliases:
        _FLAGS[_f.lower()] = _o


#: QuickReduce flags podiflow refuses, with the reason.
REJECTED_FLAGS = {
    "prestage": "staging is not needed: podiflow reads .fits and .fits.fz in place",
    "pikalisten": "RabbitMQ log listening is not supported: follow the run in luigid's web UI (-scheduler)",
    "profile": "run `python -m cProfile -m workflows.cli` instead",
    "asciisex": "podiflow runs no SExtractor: its catalogues are FITS tables",
    "keepsex": "podiflow runs no SExtractor: the per-OTA catalogues are kept as checkpoints anyway",
    "debugfile": "the Luigi log goes to the terminal (configure Luigi's logging for a file)",
    "jobid": "job ids belong to QuickReduce's pika logging, which podiflow does not have",
    "logicalid": "logical ids belong to QuickReduce's pika logging, which podiflow does not have",
}


def option_for_flag(flag: str) -> Option:
    """Return the option a command-line flag (with or without its dash, any case) sets.

    Raises
    ------
    OptionError
        For an unknown flag, or one of :data:`REJECTED_FLAGS` (the message says why).
    """
    key = flag.lstrip("-").lower()
    if key in REJECTED_FLAGS:
        raise OptionError(f"-{key} is not supported by podiflow: {REJECTED_FLAGS[key]}")
    try:
        return _FLAGS[key]
    except KeyError:
        raise OptionError(f"unknown option -{flag.lstrip('-')}") from None


def _make_options_class():
    spec = [(o.name, Any, field(default=o.default)) for o in OPTIONS]
    cls = make_dataclass("ReductionOptions", spec, frozen=True)
    cls.__doc__ = (
        "All reduction options with their values (see :data:`OPTIONS` for meanings).\n\n"
        "Build with :meth:`from_mapping`; ``significant(family)`` gives the values that shape a task family."
    )
    return cls


ReductionOptions = _make_options_class()


def _from_mapping(cls, values: dict | None = None) -> "ReductionOptions":
    """Build options from ``{name: text or value}`` (e.g. a ``luigi.cfg`` section).

    Unknown names raise ``OptionError``; an empty text means the default.
    """
    parsed = {}
    for key, value in (values or {}).items():
        opt = OPTIONS_BY_NAME.get(key)
        if opt is None:
            raise OptionError(f"unknown reduction option {key!r}")
        if value == "":
            continue
        parsed[key] = opt.parse(value) if isinstance(value, (str, bool)) or value is None else value
    return cls(**parsed)


def _significant(self, family: str) -> dict:
    """Return ``{name: value}`` of the options that shape task family ``family`` (for target identity)."""
    return {o.name: getattr(self, o.name) for o in OPTIONS if family in o.shapes}


def _replace(self, **changes) -> "ReductionOptions":
    """Return a copy with some values changed."""
    values = {f.name: getattr(self, f.name) for f in fields(self)}
    values.update(changes)
    return type(self)(**values)


ReductionOptions.from_mapping = classmethod(_from_mapping)
ReductionOptions.significant = _significant
ReductionOptions.replace = _replace

#: Three comma fields, the first two numbers: a -nonsidereal value given to -nonlinearity.
_NONSIDEREAL_RE = re.compile(r"^[-+.\deE]+,[-+.\deE]+,[^,]+$")
_FLAG_RE = re.compile(r"^-(?P<name>[A-Za-z][A-Za-z0-9_]*)(=(?P<value>.*))?$")


def parse_collectcells_args(argv: list[str]) -> tuple[list[str], "ReductionOptions", list[str]]:
    """Parse a ``podi_collectcells`` command line into positionals, options and warnings.

    Positional arguments are the items that do not start with '-' or start with '-<digit>'. Flags are
    ``-name`` or ``-name=value``; ``list`` options repeat (``-addfitskey=A,1 -addfitskey=B,2``).

    Parameters
    ----------
    argv : list of str
        The arguments after the program name.

    Returns
    -------
    positionals : list of str
    options : ReductionOptions
    warnings : list of str
        Deprecated flags that were accepted without effect, and a three-field ``-nonlinearity=dra,ddec,ref``
        taken as ``-nonsidereal``.

    Raises
    ------
    OptionError
        For an unknown or rejected flag (:data:`REJECTED_FLAGS`), a bad value, or a flag whose step is not
        implemented yet.
    """
    positionals: list[str] = []
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for arg in argv:
        m = _FLAG_RE.match(arg)
        if not m:
            positionals.append(arg)
            continue
        opt = option_for_flag(m["name"])
        if opt.name == "nonlinearity" and _NONSIDEREAL_RE.match(m["value"] or ""):
            warnings.append(f"-nonlinearity={m['value']} looks like 'dra,ddec,ref': taken as -nonsidereal")
            opt = OPTIONS_BY_NAME["nonsidereal"]
        if opt.deprecated:
            warnings.append(opt.deprecated)
            continue
        if not opt.available:
            raise OptionError(
                f"{opt.cli_flag} is not available yet: its step arrives with issue {opt.issue} "
                f"({opt.doc})"
            )
        value = opt.parse(m["value"])
        if opt.kind in ("list", "multi") and opt.name in values:
            value = values[opt.name] + value
        values[opt.name] = value
    return positionals, ReductionOptions(**values), warnings
