"""Target identity, atomic outputs and provenance of the task base."""

import json
import os

import luigi
import numpy as np
import pytest
import xxhash
from astropy.io import fits

from podisteps.io.atomic import TornFileError
from workflows import base
from workflows.base import (CheckpointTarget, FitsTarget, PodiTask, cached_checksum, file_checksum, fingerprint,
                            input_identity, options_param, provenance_cards, variant_record)
from workflows.options import ReductionOptions


class _Upstream(PodiTask):
    source = luigi.Parameter()

    def external_inputs(self):
        return [self.source]


class _Product(PodiTask):
    source = luigi.Parameter()

    def requires(self):
        return _Upstream(source=self.source)


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU().writeto(path)
    return path


def test_identity_tracks_options_upstream_and_external_files(source, tmp_path, podiflow_config):
    podiflow_config(raw_dir=tmp_path / "raw")
    plain = _Product(source=str(source), options=options_param(ReductionOptions(), ["DetrendOTA"]))
    nonlin = _Product(source=str(source),
                      options=options_param(ReductionOptions().replace(nonlinearity="auto"), ["DetrendOTA"]))
    assert plain.identity != nonlin.identity
    # options that do not shape the product do not change it
    fix = _Product(source=str(source), options=options_param(ReductionOptions().replace(fixwcs=True),
                                                               ["DetrendOTA"]))
    assert fix.identity == plain.identity
    before = _Upstream(source=str(source)).identity
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, or copied again: same bytes
    luigi.task_register.Register.clear_instance_cache()  # a new scheduling run
    assert _Upstream(source=str(source)).identity == before
    source.write_bytes(source.read_bytes() + b"changed")  # the input replaced in place
    luigi.task_register.Register.clear_instance_cache()
    assert _Upstream(source=str(source)).identity != before
    # the downstream product sees the new upstream id
    assert _Product(source=str(source), options=plain.options).identity != plain.identity


def test_raw_frames_count_by_fingerprint_other_inputs_by_content(tmp_path, podiflow_config):
    podiflow_config(raw_dir=tmp_path / "raw")
    raw, cal = tmp_path / "o20131005T014745.0.33.fits", tmp_path / "bias_bin1.fits"
    for path in (raw, cal):
        fits.PrimaryHDU().writeto(path)
    assert input_identity(raw) == fingerprint(raw)  # immutable raw data: one stat
    assert input_identity(cal) == ["content", file_checksum(cal)]
    copy = tmp_path / "copy.fits"
    copy.write_bytes(cal.read_bytes())
    assert input_identity(copy) == input_identity(cal)


def test_atomic_fits_target_and_provenance(tmp_path, source, podiflow_config):
    podiflow_config(raw_dir=tmp_path / "raw", work_dir=tmp_path / "work")  # checksums are cached in <work>
    task = _Upstream(source=str(source))
    target = FitsTarget(str(tmp_path / "sub" / "p.fits"))
    hdu = fits.PrimaryHDU()
    for card in provenance_cards(task, {"raw": source}):
        hdu.header[card[0]] = (card[1], card[2])
    target.write_hdulist(fits.HDUList([hdu]))
    assert target.exists() and os.listdir(tmp_path / "sub") == ["p.fits"]
    hdr = fits.getheader(target.path)
    assert hdr["PFTASK"] == "_Upstream" and hdr["PFID"] == task.identity
    assert hdr["PFIN001"].endswith("raw.fits") and len(hdr["PFSUM001"]) == 32
    assert [p.read_text() for p in (tmp_path / "work" / ".checksums").rglob("*.xxh3")] == [hdr["PFSUM001"]]
    source.write_bytes(source.read_bytes() + b"changed")  # a new state of the file: hashed again
    assert dict((k, v) for k, v, _ in provenance_cards(task, {"raw": source}))["PFSUM001"] != hdr["PFSUM001"]


def test_a_checksum_cache_entry_cut_short_is_hashed_again(tmp_path, source, podiflow_config):
    podiflow_config(raw_dir=tmp_path / "raw", work_dir=tmp_path / "work")
    digest = cached_checksum(source)
    (entry,) = (tmp_path / "work" / ".checksums").rglob("*.xxh3")
    entry.write_text(digest[:7])  # as a machine crash may leave it (the cache is not fsynced)
    base._DIGESTS.clear()
    assert cached_checksum(source) == digest == file_checksum(source) and entry.read_text() == digest


@pytest.mark.parametrize("size", [0, 4096, 3 * 4096 + 17])
def test_file_checksum_is_xxh3_of_the_bytes_across_map_windows(tmp_path, size):
    data = np.random.default_rng(5).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    assert file_checksum(path, window=4096) == file_checksum(path) == xxhash.xxh3_128_hexdigest(data)
    if size:
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the last bit changed: another digest
        assert file_checksum(path, window=4096) != xxhash.xxh3_128_hexdigest(data)


def test_failed_write_leaves_no_target(tmp_path):
    target = FitsTarget(str(tmp_path / "bad.fits"))
    broken = fits.HDUList([fits.PrimaryHDU(), fits.PrimaryHDU()])  # two primaries: invalid
    with pytest.raises(Exception):
        target.write_hdulist(broken)
    assert os.listdir(tmp_path) == []


class _Reader(PodiTask):
    path = luigi.Parameter()

    def requires(self):
        return _Written(path=self.path)


class _Written(PodiTask):
    path = luigi.Parameter()

    def output(self):
        return CheckpointTarget(self.path)


def _checkpoint(path):
    """A DetrendOTA-like checkpoint (primary, SCI, MASK, table) written without fsync; its HDU offsets."""
    CheckpointTarget(str(path)).write_hdulist(fits.HDUList([
        fits.PrimaryHDU(), fits.ImageHDU(np.ones((64, 64), np.float32), name="OTA33.SCI"),
        fits.ImageHDU(np.zeros((64, 64), np.uint16), name="OTA33.MASK"),
        fits.BinTableHDU.from_columns([fits.Column("X", "E", array=np.arange(3.0))], name="SKYBOXES")]))
    with fits.open(path) as hdul:
        return [hdul.fileinfo(i)["hdrLoc"] for i in range(len(hdul))]


@pytest.mark.parametrize("cut", ["empty", "in a header", "in the data", "at an HDU boundary"])
def test_a_checkpoint_cut_short_is_refused_and_removed_when_read(tmp_path, cut):
    path = tmp_path / "o1.33.detrend.abc.fits"
    starts = _checkpoint(path)
    assert fits.getheader(path)["PFNHDU"] == 4
    reader = _Reader(path=str(path))
    assert reader.input().path == str(path)  # whole: read as it is
    keep = {"empty": 0, "in a header": starts[2] + 80, "in the data": starts[2] - 2880,
            "at an HDU boundary": starts[3]}[cut]
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(TornFileError, match=f"^{path}: checkpoint cut short .*; removed: the next run makes it"):
        _Reader(path=str(path)).input()
    assert not path.exists()  # the next run makes it again


def test_a_durable_product_has_no_hdu_count(tmp_path):
    path = tmp_path / "p.fits"
    FitsTarget(str(path)).write_hdulist(fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 4)))]))
    assert "PFNHDU" not in fits.getheader(path)


def test_progress_is_safe_outside_a_worker(source):
    _Upstream(source=str(source)).progress(50, "half way")


def test_tasks_show_a_short_variant_instead_of_their_options(source, tmp_path, podiflow_config):
    podiflow_config(raw_dir=tmp_path / "raw")
    opts = ReductionOptions().replace(nonlinearity="auto")
    task = _Product(source=str(source), options=options_param(opts, ["DetrendOTA"]))
    other = _Product(source=str(source), options=options_param(ReductionOptions(), ["DetrendOTA"]))
    assert repr(task) == f"_Product(source={source}, variant={task.variant})"
    assert len(task.variant) == 6 and task.variant != other.variant
    assert "options" not in task.task_id and task.task_id != other.task_id
    assert repr(_Product(source=str(source))) == f"_Product(source={source}, variant=default)"
    # the full options still travel to remote workers and still shape the identity
    assert "options" in task.to_str_params()
    assert _Product.from_str_params(task.to_str_params()).identity == task.identity


class _Touch(PodiTask):
    target = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(self.target)

    def run(self):
        with self.output().open("w") as fh:
            fh.write("done")


def test_each_variant_records_its_options_once(tmp_path, podiflow_config):
    podiflow_config(raw_dir=tmp_path / "raw")
    options = options_param(ReductionOptions().replace(nonlinearity="auto"), ["DetrendOTA"])
    task = _Touch(target=str(tmp_path / "a.txt"), options=options)
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    assert json.loads(variant_record(task.variant).read_text()) == options
    assert variant_record(task.variant).parent == tmp_path / "work" / "variants"


def test_every_podiflow_error_shares_one_base_and_keeps_its_builtin():
    from podisteps.catalog.refcat import NetworkDisabledError
    from podisteps.errors import CalibrationError
    from podisteps.detrend.wcs import WCSKeywordError
    from podisteps.errors import PodiflowError
    from podisteps.io.rawio import RawFormatError
    from podisteps.masters.calselect import NoCalibrationError
    from podisteps.sanity import SanityError
    from workflows.failures import NothingToDo
    from workflows.options import OptionError
    from workflows.paths import SetupError
    from workflows.saturation import ExposureError

    for cls, builtin in [(CalibrationError, ValueError), (NoCalibrationError, LookupError),
                         (RawFormatError, ValueError), (NetworkDisabledError, RuntimeError),
                         (WCSKeywordError, ValueError), (OptionError, ValueError), (ExposureError, RuntimeError),
                         (SanityError, ValueError), (SetupError, RuntimeError), (NothingToDo, Exception)]:
        assert issubclass(cls, PodiflowError) and issubclass(cls, builtin), cls
