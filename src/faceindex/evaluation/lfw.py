"""Readers for Labeled Faces in the Wild pairs/people files, resolved to image paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faceindex.errors import InvalidInputError

DEVTRAIN_FOLDS = 10


@dataclass(frozen=True)
class Pair:
    """One LFW comparison: two image paths, whether they show the same person, and its fold (0-based)."""

    path_a: Path
    path_b: Path
    same: bool
    fold: int

    @property
    def identity_a(self) -> str:
        return self.path_a.parent.name

    @property
    def identity_b(self) -> str:
        return self.path_b.parent.name


@dataclass(frozen=True)
class Person:
    """One line of a people file: a name, how many images it has, and its fold (0 for View 1)."""

    name: str
    n_images: int
    fold: int


def images_dir(lfw_dir: str | Path) -> Path:
    """The folder holding `<name>/<name>_<NNNN>.jpg`: `lfw_dir/images` if present, else `lfw_dir`."""
    root = Path(lfw_dir)
    if (root / "images").is_dir():
        return root / "images"
    if not root.is_dir():
        raise InvalidInputError(f"LFW folder {root} does not exist")
    return root


def image_path(images: Path, name: str, index: int) -> Path:
    """LFW's layout: `images/<name>/<name>_<4-digit index>.jpg` (index is 1-based as in the files)."""
    return images / name / f"{name}_{index:04d}.jpg"


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of every non-blank line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"cannot read LFW file {path}: {e}") from e
    return [(n, ln.split()) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def _int(tok: str, path: Path, lineno: int, what: str, minimum: int = 1) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise InvalidInputError(f"{path}:{lineno}: {what} {tok!r} is not an integer") from None
    if v < minimum:
        raise InvalidInputError(f"{path}:{lineno}: {what} {v} must be >= {minimum}")
    return v


def _name(tok: str, path: Path, lineno: int) -> str:
    # Names become path components: refuse anything that could leave the images folder.
    if tok in (".", "..") or any(c in tok for c in "/\\\0"):
        raise InvalidInputError(f"{path}:{lineno}: {tok!r} is not a valid LFW name")
    return tok


def load_pairs(pairs_file: str | Path, lfw_dir: str | Path | None = None, *,
               check_exists: bool = True) -> list[Pair]:
    """Parse an LFW pairs file as distributed and resolve every pair to image paths.

    Formats (fields separated by tabs or spaces):
    - View 1 (`pairsDevTrain.txt`, `pairsDevTest.txt`): first line N, then N lines `name i j` (same
      person) and N lines `name1 i name2 j` (different people). These files have no folds; for
      the 10-fold protocol the pairs are dealt deterministically: the k-th same pair and the k-th
      different pair go to fold k % 10, so every fold holds N/10 of each kind (110 + 110 for
      DevTrain). Figures from this split are "dev" figures, not the official View-2 protocol.
    - View 2 (`pairs.txt`): first line `folds N`, then for each fold N same then N different lines;
      fold numbers are 0-based in file order.

    `lfw_dir` is the LFW root (containing `images/`) or the images folder itself; default is the
    folder holding `pairs_file`. With `check_exists` every image must exist (one stat per path,
    ~4 400 for View 1), and the error lists the first missing ones.
    Raises InvalidInputError with `file:line` on any malformed or missing line.
    """
    path = Path(pairs_file)
    images = images_dir(path.parent if lfw_dir is None else lfw_dir)
    lines = _lines(path)
    if not lines:
        raise InvalidInputError(f"{path}: empty pairs file")
    lineno, head = lines[0]
    if len(head) == 1:
        n_folds, per_set, view1 = 1, _int(head[0], path, lineno, "pair count"), True
    elif len(head) == 2:
        n_folds = _int(head[0], path, lineno, "fold count")
        per_set, view1 = _int(head[1], path, lineno, "pair count"), False
    else:
        raise InvalidInputError(f"{path}:{lineno}: header must be `N` or `folds N`, got {' '.join(head)!r}")
    expected = 1 + n_folds * 2 * per_set
    if len(lines) != expected:
        where = lines[expected][0] if len(lines) > expected else lines[-1][0] + 1
        raise InvalidInputError(f"{path}:{where}: expected {expected - 1} pair lines after the header "
                                f"({n_folds} fold(s) x {per_set} same + {per_set} different), "
                                f"found {len(lines) - 1}")
    pairs: list[Pair] = []
    for k, (lineno, f) in enumerate(lines[1:]):
        fold_idx, within = divmod(k, 2 * per_set)
        same = within < per_set
        if same and len(f) != 3:
            raise InvalidInputError(f"{path}:{lineno}: a same-person line needs `name i j`, got {len(f)} fields")
        if not same and len(f) != 4:
            raise InvalidInputError(f"{path}:{lineno}: a different-people line needs `name1 i name2 j`, "
                                    f"got {len(f)} fields")
        if same:
            na = nb = _name(f[0], path, lineno)
            ia, ib = _int(f[1], path, lineno, "image index"), _int(f[2], path, lineno, "image index")
        else:
            na, ia = _name(f[0], path, lineno), _int(f[1], path, lineno, "image index")
            nb, ib = _name(f[2], path, lineno), _int(f[3], path, lineno, "image index")
        fold = (within % per_set) % DEVTRAIN_FOLDS if view1 else fold_idx
        pairs.append(Pair(image_path(images, na, ia), image_path(images, nb, ib), same, fold))
    if check_exists:
        missing = sorted({str(p) for pr in pairs for p in (pr.path_a, pr.path_b) if not p.is_file()})
        if missing:
            raise InvalidInputError(f"{len(missing)} image(s) named in {path} are missing under {images}, "
                                    f"e.g. {', '.join(missing[:3])}")
    return pairs


def load_people(people_file: str | Path) -> list[Person]:
    """Parse an LFW people file: View 1 (`N` then N lines `name count`) or View 2 (`folds`, then per
    fold a line `N` and N lines `name count`). The two are told apart by the second line: a lone
    integer means View 2. Folds are 0-based; View 1 people are all fold 0.
    """
    path = Path(people_file)
    lines = _lines(path)
    if not lines:
        raise InvalidInputError(f"{path}: empty people file")
    lineno, head = lines[0]
    if len(head) != 1:
        raise InvalidInputError(f"{path}:{lineno}: header must be a single integer")
    first = _int(head[0], path, lineno, "count")
    view2 = len(lines) > 1 and len(lines[1][1]) == 1
    people: list[Person] = []
    pos = 1
    for fold in range(first if view2 else 1):
        if view2:
            if pos >= len(lines):
                raise InvalidInputError(f"{path}:{lines[-1][0] + 1}: missing count line of fold {fold + 1}")
            lineno, f = lines[pos]
            if len(f) != 1:
                raise InvalidInputError(f"{path}:{lineno}: expected the person count of fold {fold + 1}")
            count, pos = _int(f[0], path, lineno, "person count"), pos + 1
        else:
            count = first
        for _ in range(count):
            if pos >= len(lines):
                raise InvalidInputError(f"{path}:{lines[-1][0] + 1}: file ends early, {count} people "
                                        f"expected in fold {fold + 1}")
            lineno, f = lines[pos]
            if len(f) != 2:
                raise InvalidInputError(f"{path}:{lineno}: expected `name count`, got {len(f)} fields")
            people.append(Person(_name(f[0], path, lineno), _int(f[1], path, lineno, "image count"), fold))
            pos += 1
    if pos != len(lines):
        raise InvalidInputError(f"{path}:{lines[pos][0]}: unexpected extra line")
    return people


def person_images(lfw_dir: str | Path, person: Person) -> list[Path]:
    """The image paths of one person from a people file (not checked for existence)."""
    images = images_dir(lfw_dir)
    return [image_path(images, person.name, i) for i in range(1, person.n_images + 1)]
