"""Compiling one export: read, translate, export, prove, write.

Run as `python -m compiler` (compiler/__main__.py), usually through
`python -m app compile` or by the server itself (app/inference/loading.py), each time in
a process of its own and in the export's own fastai line.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import fastai
import numpy as np
import onnx
import torch

from app.inference.model import EXACT, FORMAT, METADATA_KEY, Model
from app.kinds import kind_of
from compiler.batch import RESIZING
from compiler.decoding import check_fast_decode, reduced_decoding
from compiler.explaining.graph import attach, detach
from compiler.explaining.proof import check_explanation, int8_agreement, split_of
from compiler.explaining.split import Split
from compiler.export import (
    OPSET,
    activation_name,
    export_graph,
    export_head,
    network_input,
    output_shape,
)
from compiler.kinds import check_frame, task
from compiler.learner import CompileError, read_learner
from compiler.parity import check_parity
from compiler.pipeline import translate
from compiler.quantize import CALIBRATION, photos, quantize


def _with_info(graph: bytes, info: dict) -> bytes:
    proto = onnx.load_from_string(graph)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info, sort_keys=True)
    return proto.SerializeToString()


def _write(path: Path, data: bytes) -> None:
    """Atomically: a reader never sees half a file, and a failed compile leaves none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".partial", delete=False) as tmp:
        try:
            tmp.write(data)
            tmp.close()
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp.name, 0o666 & ~umask)  # as open() would make it, not tempfile's 0600
            os.replace(tmp.name, path)
        except BaseException:  # a full disk, a path that is a folder, Ctrl-C
            os.unlink(tmp.name)
            raise


def _loaded(graph: bytes, info: dict, folder: Path) -> Model:
    path = folder / "candidate.onnx"
    path.write_bytes(_with_info(graph, info))
    return Model.load(path)


def compile_file(
    source: Path,
    out: Path,
    say=print,
    int8: bool = False,
    calibration: Path = CALIBRATION,
    holdout: Path | None = None,
    fast_decode: bool = False,
) -> dict:
    """Compile `source` to `out` and return the metadata written into it. With `int8`,
    the proven fp32 graph is quantized, calibrated on `calibration`'s photos and checked
    against fp32 on `holdout`'s (compiler/quantize.py). With `fast_decode`, large JPEGs
    are to be decoded at reduced scale, measured against exact decoding on `holdout`'s
    photos or phone-size ones (compiler/decoding.py)."""
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    stood_in: list[str] = []
    learn = read_learner(source, stood_in)
    kind = task(learn)
    translation = translate(learn)
    output = output_shape(learn, translation)
    check_frame(kind, translation, output)
    if fast_decode:
        check_fast_decode(translation.preprocessing["size"])
    described = {**kind, "output": {"shape": output}, "preprocessing": translation.preprocessing}
    say(
        f"compiling {source.name}: {type(learn.model).__name__}, {kind_of(described).summary()}, "
        f"{translation.preprocessing['mode']} {translation.preprocessing['size']}"
    )
    if stood_in:
        say(
            f"stood in for {len(stood_in)} name(s) the export pickled and this process "
            f"lacks, which predicting doesn't call (they raise if called): {', '.join(stood_in)}"
        )
    info = {
        "format": FORMAT,
        **kind,
        "output": {"shape": output},
        "precision": "fp32",
        "preprocessing": translation.preprocessing,
        "graph": {
            "input": "uint8 [batch, height, width, channels]",
            "batch_transforms": translation.batch,
            "activation": activation_name(learn),
            "opset": OPSET,
        },
        "source": {
            "file": source.name,
            "sha256": sha256,
            "architecture": type(learn.model).__name__,
            "fastai_version": fastai.__version__,
            "torch_version": torch.__version__,
            "training_only_steps_left_out": translation.skipped,
        },
        "parity": None,
        "quantization": None,
        "decoding": EXACT,
        "explanation": None,
    }
    example = network_input(learn, translation)
    sized = translation.preprocessing["size"] is not None or any(
        op["op"] in RESIZING for op in translation.batch
    )
    split = split_of(learn, kind_of(described), example, sized)
    graph, split = _explaining(learn, translation, split)
    with tempfile.TemporaryDirectory() as tmp:
        unproven = Path(tmp) / "unproven.onnx"
        unproven.write_bytes(_with_info(graph, info))
        candidate = Model.load(unproven)
        served_cells: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        info["parity"] = check_parity(learn, translation, candidate, served_cells)
        parity = info["parity"]
        say(
            f"parity with learn.predict: {parity['images']} images, largest difference "
            f"{parity['max_abs_diff']:.2g} (tolerance {parity['tolerance']:g}), the same "
            "decoded answers on all"
        )
        if isinstance(split, Split):
            try:
                info["explanation"] = check_explanation(
                    learn, translation, candidate, split, served_cells
                )
            except CompileError as exc:
                split = str(exc)
                graph = detach(graph)[0]  # the proven graph, less the branch
        if isinstance(split, str):
            info["explanation"] = {"refused": split}
            say(f"explanations: none, since {split}")
        else:
            explained = info["explanation"]["parity"]
            say(
                f"explanations (Recipro-CAM at {split.name}, {split.height}x{split.width} "
                f"cells): the same maps as torch's on the learner, largest difference "
                f"{explained['max_abs_diff']:.2g} in the scores, "
                f"{explained['max_abs_diff_normalised']:.2g} in the normalised map"
            )
        if int8:
            proven = Path(tmp) / "fp32.onnx"
            proven.write_bytes(_with_info(graph, info))
            graph, info = _quantized(proven, say, calibration, holdout)
        if fast_decode:  # measured on the graph that is written: INT8's, with --int8
            info["decoding"] = reduced_decoding(_loaded(graph, info, Path(tmp)), holdout)
            held = info["decoding"]["holdout"]
            say(
                f"reduced-scale JPEG decoding: the exact decoding's answer on "
                f"{held['same_labels']} of {held['images']} held-out photos "
                f"({held['agreement']:.1%}), largest difference in the output "
                f"{held['max_abs_diff']:.2g}"
            )
    return _written(out, graph, info, say)


def quantize_file(
    fp32: Path,
    out: Path,
    say=print,
    calibration: Path = CALIBRATION,
    holdout: Path | None = None,
) -> dict:
    """`compile --int8`'s last step, on a compiled fp32 file whose parity is proven:
    quantized, calibrated on `calibration`'s photos and checked against the fp32 file on
    `holdout`'s (compiler/quantize.py); written to `out`, its metadata returned."""
    return _written(out, *_quantized(fp32, say, calibration, holdout), say)


def _quantized(fp32: Path, say, calibration: Path, holdout: Path | None) -> tuple[bytes, dict]:
    """The INT8 graph and its metadata."""
    info = Model.load(fp32).info
    network, head = detach(fp32.read_bytes())  # the explaining head stays fp32
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "network.onnx"
        plain.write_bytes(network)
        graph, quantization = quantize(
            plain, calibration, holdout, load=lambda g: _loaded(g, info, Path(tmp))
        )
        if head is not None:
            graph = attach(graph, head)
            agreement = int8_agreement(
                Model.load(fp32), _loaded(graph, info, Path(tmp)), photos(holdout)
            )
            info = {**info, "explanation": {**info["explanation"], "int8": agreement}}
    info = {**info, "precision": "int8", "quantization": quantization}
    held = quantization["holdout"]
    say(
        f"INT8, calibrated on {quantization['calibration']['images']} photos: "
        f"fp32's answer on {held['same_labels']} of {held['images']} held-out images "
        f"({held['agreement']:.1%}), largest difference in the output "
        f"{held['max_abs_diff']:.2g}"
    )
    if head is not None:
        agreement = info["explanation"]["int8"]
        say(
            f"INT8 explanations (the head stays fp32): the same peak cell as fp32's on "
            f"{agreement['same_peak']} of {agreement['images']} held-out images, largest "
            f"difference in the normalised map {agreement['max_abs_diff_normalised']:.2g}"
        )
    return graph, info


def _explaining(learn, translation, split: Split | str) -> tuple[bytes, Split | str]:
    """The served graph, with the explaining head behind If(explain) when the network
    has a split and its head exports on its own; else the reason it can't explain."""
    if isinstance(split, Split):
        graph = export_graph(learn, translation, split)
        try:
            head = onnx.load_from_string(export_head(learn, translation, split)).graph
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            split = f"its head does not export to ONNX on its own ({first})"
        else:
            return attach(graph, head), split
    return export_graph(learn, translation), split


def _written(out: Path, graph: bytes, info: dict, say) -> dict:
    _write(out, _with_info(graph, info))
    say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return info
