"""Stage ``examples/*.py`` for sphinx-gallery.

sphinx-gallery needs a reST title in each script's first docstring and a
``README.txt`` in the folder. The scripts in ``examples/`` are plain programs
(``python examples/x.py``), so they are copied into ``docs/_gallery_src``,
and a script whose docstring starts with a one-line summary gets that line as
its title. sphinx-gallery runs scripts inside the Sphinx process, where a
final ``raise SystemExit(main())`` / ``sys.exit(main())`` would end the whole
build: in the staged copy it becomes a plain ``main()`` call. Examples added later appear in the gallery without changes here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

README = """Examples
========

Every script runs offline on bundled photos or synthetic data
(``python examples/<name>.py``; output goes to ``$EMBSTORE_EXAMPLE_OUT``).
The docs execute the quick ones and show their output and figures; the
others are shown with their code and run in the test suite.
"""


def titled(source: str, name: str) -> str:
    r'''``source`` with a reST title in its first docstring.

    Parameters
    ----------
    source : str
        The script.
    name : str
        Its file name (the title when there is no docstring).

    Returns
    -------
    str

    Examples
    --------
    >>> titled('"""Do a thing.\n\nMore."""\nx = 1\n', "a.py").splitlines()[:3]
    ['"""', 'Do a thing', '==========']
    '''
    m = re.match(r'\A(\s*(?:#[^\n]*\n\s*)*)(r?""")(.*?)"""', source, re.S)
    if m is None:
        return f'"""\n{name}\n{"=" * len(name)}\n"""\n' + source
    body = m.group(3).strip("\n")
    lines = body.splitlines()
    if len(lines) >= 2 and lines[1].strip() and set(lines[1].strip()) <= set("=-~^*#"):
        return source  # already titled
    title = lines[0].strip().rstrip(".") if lines else name
    rest = "\n".join(lines[1:]).strip("\n")
    doc = f'{m.group(2)}\n{title}\n{"=" * len(title)}\n\n{rest}\n"""'
    return source[: m.start(2)] + doc + source[m.end() :]


def no_exit(source: str) -> str:
    r"""Replace indented ``raise SystemExit(x)`` / ``sys.exit(x)`` lines by ``x``.

    Parameters
    ----------
    source : str
        The script.

    Returns
    -------
    str

    Examples
    --------
    >>> no_exit("if __name__ == '__main__':\n    raise SystemExit(main())\n")
    "if __name__ == '__main__':\n    main()\n"
    """
    return re.sub(r"(?m)^(\s+)(?:raise SystemExit|sys\.exit)\((.*)\)[ \t]*$", r"\1\2", source)


def stage_examples(src: str | Path, dst: str | Path) -> list[Path]:
    """Copy the example scripts into ``dst`` with titles and a README.

    Parameters
    ----------
    src, dst : str or pathlib.Path
        ``examples/`` and the staging folder (recreated).

    Returns
    -------
    list of pathlib.Path
        The staged scripts.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    (dst / "README.txt").write_text(README)
    out = []
    for script in sorted(src.glob("*.py")):
        target = dst / script.name
        target.write_text(no_exit(titled(script.read_text(), script.stem)))
        out.append(target)
    return out
