"""The catalog's tables (SQLModel).

The literature part (papers, authors, reading lists, reviews) is an index rebuilt from the text in
`papers/` by `catalog sync`; the reproduction part (reproductions and their expected rows) is rebuilt
from `repro/<slug>/`; the run part (runs, measurements, claim results, artifacts) is the system of
record for what was measured, written by the runner and by `catalog ingest-runs`.

Schema changes go through Alembic (`catalog/migrations/`): edit these models, then add a revision.
"""

from datetime import UTC, datetime
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, Relationship, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------- literature


class PaperAuthor(SQLModel, table=True):
    """Ordered link between a paper and its authors (position 0 is the first author)."""

    paper_key: str = Field(foreign_key="paper.key", primary_key=True, ondelete="CASCADE")
    author_id: int = Field(foreign_key="author.id", primary_key=True, ondelete="CASCADE")
    position: int = Field(index=True)

    paper: "Paper" = Relationship(back_populates="author_links")
    author: "Author" = Relationship(back_populates="paper_links")


class Paper(SQLModel, table=True):
    """One cited work; `key` is its house-style BibTeX key (`YYYY_Lastname_F_<venue>_<initials>`)."""

    key: str = Field(primary_key=True, max_length=120)
    entry_type: str = Field(default="inproceedings", max_length=40)
    title: str = Field(sa_column=Column(Text, nullable=False))
    year: int = Field(index=True)
    venue: str | None = Field(default=None, max_length=300, index=True)
    venue_kind: str | None = Field(default=None, max_length=20)  # conference | journal | preprint
    arxiv_id: str | None = Field(default=None, max_length=40, index=True)
    doi: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=500)
    code_url: str | None = Field(default=None, max_length=500)
    abstract: str | None = Field(default=None, sa_column=Column(Text))
    bibtex: str = Field(sa_column=Column(Text, nullable=False))  # the entry as written in the file
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    author_links: list["PaperAuthor"] = Relationship(
        back_populates="paper",
        sa_relationship_kwargs={
            "order_by": "PaperAuthor.position",
            "cascade": "all, delete-orphan",
        },
    )
    list_entries: list["ListEntry"] = Relationship(back_populates="paper")
    review: Optional["Review"] = Relationship(
        back_populates="paper", sa_relationship_kwargs={"cascade": "all, delete-orphan"}
    )

    @property
    def authors(self) -> list["Author"]:
        """Authors in the order the paper lists them."""
        return [link.author for link in sorted(self.author_links, key=lambda a: a.position)]


class Author(SQLModel, table=True):
    """A person, by display name ("Ian J. Goodfellow"); `name` is unique."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    last_name: str = Field(max_length=120, index=True)

    paper_links: list["PaperAuthor"] = Relationship(back_populates="author")


class ReadingList(SQLModel, table=True):
    """One of the user's reading lists (`papers/lists/`), in one of four source formats."""

    slug: str = Field(primary_key=True, max_length=80)
    title: str = Field(max_length=300)
    format: str = Field(max_length=40)  # review-list | lecture | jekyll | papis
    source_file: str = Field(max_length=300)  # path relative to the project root
    description: str | None = Field(default=None, sa_column=Column(Text))
    provenance: str | None = Field(default=None, sa_column=Column(Text))

    entries: list["ListEntry"] = Relationship(
        back_populates="reading_list",
        sa_relationship_kwargs={"order_by": "ListEntry.position", "cascade": "all, delete-orphan"},
    )


class ListEntry(SQLModel, table=True):
    """A paper's place in a reading list, with the list's own words on it.

    `cited_*` keep what the list itself said (title, arXiv id, link, key) so that `catalog check`
    can report where the list contradicts the catalog; `paper_key` is the resolved paper, or None
    when nothing matched.
    """

    __table_args__ = (UniqueConstraint("list_slug", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    list_slug: str = Field(foreign_key="readinglist.slug", index=True, ondelete="CASCADE")
    position: int
    paper_key: str | None = Field(default=None, foreign_key="paper.key", index=True)
    cited_title: str | None = Field(default=None, sa_column=Column(Text))
    cited_key: str | None = Field(default=None, max_length=120)
    cited_arxiv_id: str | None = Field(default=None, max_length=40)
    cited_url: str | None = Field(default=None, max_length=500)
    note: str | None = Field(default=None, sa_column=Column(Text))
    source_line: int | None = None

    reading_list: "ReadingList" = Relationship(back_populates="entries")
    paper: Optional["Paper"] = Relationship(back_populates="list_entries")


class Review(SQLModel, table=True):
    """Our own review of a paper (`papers/reviews/<key>.md`: YAML front matter + markdown)."""

    paper_key: str = Field(foreign_key="paper.key", primary_key=True, ondelete="CASCADE")
    body: str = Field(sa_column=Column(Text, nullable=False))
    front_matter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    source_file: str = Field(max_length=300)
    updated_at: datetime = Field(default_factory=utcnow)

    paper: "Paper" = Relationship(back_populates="review")


# --------------------------------------------------------------------------- reproductions


class Reproduction(SQLModel, table=True):
    """A `repro/<slug>/` folder. `has_notebook` is False for method-only folders (an attack used by
    other reproductions, with no experiment of its own yet)."""

    slug: str = Field(primary_key=True, max_length=80)
    paper_key: str = Field(foreign_key="paper.key", index=True)
    title: str | None = Field(default=None, max_length=300)
    uses: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    datasets: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    needs_gpu: bool = False
    has_notebook: bool = True
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))  # repro.toml
    path: str = Field(max_length=300)

    expected: list["ExpectedResult"] = Relationship(
        back_populates="reproduction",
        sa_relationship_kwargs={
            "cascade": "all, delete-orphan",
            "order_by": "ExpectedResult.position",
        },
    )


class ExpectedResult(SQLModel, table=True):
    """One row of a reproduction's `expected.csv`: the paper's number, where it was printed, and the
    tolerance a `full` run is held to. `setting` holds the extra columns (model, attack, eps, ...)."""

    __table_args__ = (UniqueConstraint("slug", "row_id"),)

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(foreign_key="reproduction.slug", index=True, ondelete="CASCADE")
    row_id: str = Field(max_length=120)
    position: int = 0
    source: str = Field(max_length=120)
    dataset: str = Field(max_length=60)
    metric: str = Field(max_length=120)
    paper_value: float | None = None
    tolerance: float | None = None
    higher_is_better: bool | None = None
    provenance: str | None = Field(default=None, sa_column=Column(Text))
    #: `not_run: <reason>` for rows that cannot run here (catalog/schema.py), else None
    status: str | None = Field(default=None, sa_column=Column(Text))
    #: the metric's unit as repro.toml's [metrics] declares it (catalog.schema.UNITS)
    unit: str | None = Field(default=None, max_length=20)
    paper_std: float | None = None
    setting: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))

    reproduction: "Reproduction" = Relationship(back_populates="expected")


# --------------------------------------------------------------------------- runs


class Run(SQLModel, table=True):
    """One execution of a reproduction's notebook, with the provenance that makes it traceable.

    Written from the run directory's `summary.json` (see `catalog.runs`), so a run recorded on a GPU
    runner and ingested later is stored exactly like one recorded locally.
    """

    id: str = Field(primary_key=True, max_length=120)
    slug: str = Field(index=True, max_length=80)
    scale: str = Field(max_length=20, index=True)
    status: str = Field(max_length=20, index=True)  # succeeded | failed
    # 64-bit: a seed is any non-negative int64 (PostgreSQL's INTEGER would overflow at 2**31)
    seed: int | None = Field(default=None, sa_column=Column(BigInteger))
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    started_at: datetime | None = Field(default=None, index=True)
    finished_at: datetime | None = None
    wall_seconds: float | None = None
    git_commit: str | None = Field(default=None, max_length=64)
    git_dirty: bool | None = None
    device: str | None = Field(default=None, max_length=200)
    host: str | None = Field(default=None, max_length=200)
    python_version: str | None = Field(default=None, max_length=40)
    torch_version: str | None = Field(default=None, max_length=40)
    torchvision_version: str | None = Field(default=None, max_length=40)
    cuda_version: str | None = Field(default=None, max_length=40)
    executor: str | None = Field(default=None, max_length=40)
    run_key: str | None = Field(default=None, max_length=80, index=True)
    reused_from: str | None = Field(default=None, max_length=120)
    run_dir: str | None = Field(default=None, max_length=500)
    notebook_path: str | None = Field(default=None, max_length=500)
    error: str | None = Field(default=None, sa_column=Column(Text))
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    recorded_at: datetime = Field(default_factory=utcnow)

    measurements: list["Measurement"] = Relationship(
        back_populates="run", sa_relationship_kwargs={"cascade": "all, delete-orphan"}
    )
    claims: list["ClaimResult"] = Relationship(
        back_populates="run", sa_relationship_kwargs={"cascade": "all, delete-orphan"}
    )
    artifacts: list["RunArtifact"] = Relationship(
        back_populates="run", sa_relationship_kwargs={"cascade": "all, delete-orphan"}
    )


class Measurement(SQLModel, table=True):
    """A measured value: for an expected row (`row_id`) or a free metric (`name`).

    `verdict`: match | deviates (full scale, compared with the paper) | not_compared (reduced scale or
    a non-comparable dataset) | not_run (`reason` says why) | measured (free metric).
    """

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    row_id: str | None = Field(default=None, max_length=120, index=True)
    name: str | None = Field(default=None, max_length=200)
    value: float | None = None
    paper_value: float | None = None
    tolerance: float | None = None
    delta: float | None = None
    verdict: str = Field(max_length=20)
    reason: str | None = Field(default=None, sa_column=Column(Text))

    run: "Run" = Relationship(back_populates="measurements")


class ClaimResult(SQLModel, table=True):
    """A paper's qualitative claim evaluated on one run (`holds` None: could not be evaluated)."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    claim_id: str = Field(max_length=120)
    text: str = Field(sa_column=Column(Text, nullable=False))
    holds: bool | None = None
    detail: str | None = Field(default=None, sa_column=Column(Text))

    run: "Run" = Relationship(back_populates="claims")


class RunArtifact(SQLModel, table=True):
    """A file a run produced (figure, executed notebook), by path relative to the run directory."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=20)  # figure | notebook | log
    path: str = Field(max_length=500)
    caption: str | None = Field(default=None, sa_column=Column(Text))

    run: "Run" = Relationship(back_populates="artifacts")
