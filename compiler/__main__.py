"""`python -m compiler export.pkl -o export.onnx [--int8] [--fast-decode]`, in its fastai line.

The arguments are read and the export's line found (compiler/fastai_lines.py) before
fastai is imported, since which fastai to import is what the line decides.
"""

import argparse
import sys
from pathlib import Path

from compiler.fastai_lines import LineError, run_in_line


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m compiler", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a fastai export (learn.export())")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--int8", action="store_true", help="quantize to INT8 (static)")
    parser.add_argument(
        "--calibration",
        type=Path,
        help="photos to calibrate INT8 with (default: the repo's example photos)",
    )
    parser.add_argument(
        "--holdout",
        type=Path,
        help="other photos to check INT8 against fp32 on (default: 20 ImageNet photos), and "
        "reduced-scale decoding against exact (default: phone-size photos of the examples)",
    )
    parser.add_argument(
        "--fast-decode",
        action="store_true",
        help="decode large JPEGs at reduced scale (measured against exact decoding)",
    )
    args = parser.parse_args(argv)
    try:
        run_in_line(args.source, argv)
    except LineError as exc:
        sys.exit(f"error: cannot compile {args.source}: {exc}")

    from compiler.learner import CompileError
    from compiler.main import compile_file

    options = {"calibration": args.calibration} if args.calibration else {}
    try:
        compile_file(
            args.source,
            args.out,
            say=lambda line: print(line, file=sys.stderr),
            int8=args.int8,
            holdout=args.holdout,
            fast_decode=args.fast_decode,
            **options,
        )
    except CompileError as exc:
        sys.exit(f"error: cannot compile {args.source}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
