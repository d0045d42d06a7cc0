"""Input files as people have them, through the real CLIs against real services (mTLS).

Each test runs ``psi-agency query``, ``psi-custodian build-index`` or ``psi synth`` as a
separate process, as an operator does, against the custodian and agency of the module's
deployment. A file problem must come back as ``input file error: PATH: line N, ...`` with
exit status 65, never a traceback or a transport status, and a query cut short by one
must leave nothing behind in the agency.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import openpyxl
import pytest

from psi_agency.app import AgencyState
from psi_core.io import SUBJECT_COLUMNS, read_rows
from psi_core.recipes import get_recipe
from psi_proto.v1 import agency_pb2, agency_pb2_grpc
from psi_rpc.modes import MODE_ENUMS
from tests.factories import as_subjects, make_records, write_records, write_subjects

pytestmark = pytest.mark.integration

TOOLS = {
    "psi": "psi_tools.cli",
    "psi-custodian": "psi_custodian.cli",
    "psi-agency": "psi_agency.cli",
}
EXIT_DATAERR = 65
EXPORT = {
    "subject_id": "Case No",
    "given_name": "FIRST_NAME",
    "family_name": "LAST_NAME",
    "street": "Address",
    "city": "City",
    "state": "St",
    "zip": "Zipcode",
}


def run(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", TOOLS[tool], *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def subjects_of(deployment, members: int = 40, strangers: int = 20) -> list[dict[str, str]]:
    chosen = as_subjects(deployment.records[:members])
    return chosen + as_subjects(make_records(strangers, seed=77, prefix="X"), prefix="T")


def expected_matches(deployment, subjects, recipe_id: str = "name_address_v1") -> set[str]:
    recipe = get_recipe(recipe_id)
    keys = {recipe.key(r) for r in deployment.records} - {None}
    return {s["subject_id"] for s in subjects if recipe.key(s) in keys}


def fits(subject: dict[str, str], encoding: str) -> bool:
    try:
        "".join(subject.values()).encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def write_csv(path: Path, header, rows, *, delimiter=",", encoding="utf-8", newline="\n"):
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(text.getvalue().encode(encoding))
    return path


@pytest.fixture(scope="module")
def token(deployment, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("token") / "case.token"
    path.write_bytes(deployment.token())
    return path


def query(deployment, token: Path, subjects: Path, *extra: str, server: str | None = None):
    out = subjects.with_name(subjects.stem + "-matches.csv")
    result = run(
        "psi-agency",
        "query",
        "--server",
        server or deployment.agency_address,
        "--tls-dir",
        deployment.pki.root,
        "--subjects",
        subjects,
        "--authorization",
        token,
        "--out",
        out,
        *extra,
    )
    matched = (
        {row["subject_id"] for batch in read_rows(out, ("subject_id",)) for row in batch}
        if result.returncode == 0 and out.exists()
        else set()
    )
    return result, matched


def queries_kept(deployment) -> int:
    with sqlite3.connect(AgencyState(deployment.root / "agency").database) as db:
        return db.execute("SELECT COUNT(*) FROM queries").fetchone()[0]


def assert_file_error(result, path: Path, where: str) -> None:
    report = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == EXIT_DATAERR, report
    assert f"input file error: {path}: {where}" in result.stderr, report
    assert "Traceback" not in result.stderr, report
    assert "UNAVAILABLE" not in result.stderr and "UNKNOWN" not in result.stderr, report


def test_names_and_addresses_only_in_latin1_with_semicolons_and_export_headers(
    deployment, token, tmp_path
):
    """An export with its own headers, no birth date or TIN, Latin-1, semicolons: it matches."""
    subjects = [s for s in subjects_of(deployment) if fits(s, "cp1252")]
    subjects[0]["family_name"] = "Muñoz-Çelik"
    path = write_csv(
        tmp_path / "export.csv",
        list(EXPORT.values()),
        [[s[c] for c in EXPORT] for s in subjects],
        delimiter=";",
        encoding="cp1252",
        newline="\r\n",
    )
    columns = tmp_path / "columns.txt"
    columns.write_text("# ours=theirs\n" + "\n".join(f"{k}={v}" for k, v in EXPORT.items()))
    result, matched = query(
        deployment, token, path, "--encoding", "cp1252", "--columns-file", columns
    )
    assert result.returncode == 0, result.stderr
    assert f"reading {path} (CSV, cp1252 (transcoded to UTF-8), detected delimiter ';')" in (
        result.stderr
    )
    assert "not in the file, read as empty: date_of_birth, tin" in result.stderr
    assert matched == expected_matches(deployment, subjects) and len(matched) >= 20


def test_a_missing_needed_column_is_named_before_connecting(deployment, token, tmp_path):
    """name_dob_v1 on a file without birth dates: exit 65 with the column, no server needed."""
    subjects = subjects_of(deployment)
    path = write_csv(
        tmp_path / "names.csv",
        ["subject_id", "given_name", "family_name", "zip"],
        [[s["subject_id"], s["given_name"], s["family_name"], s["zip"]] for s in subjects],
    )
    before = queries_kept(deployment)
    result, _ = query(deployment, token, path, "--recipe", "name_dob_v1", server="127.0.0.1:9")
    assert_file_error(
        result, path, "line 1: missing required columns: date_of_birth (read by name_dob_v1)"
    )
    assert queries_kept(deployment) == before


def test_alias_headers_get_a_suggested_mapping(deployment, token, tmp_path):
    """Headers like FIRST_NAME and Zipcode are named back as the --column flags to add."""
    subjects = subjects_of(deployment, 5, 0)
    path = write_csv(
        tmp_path / "export.csv", list(EXPORT.values()), [[s[c] for c in EXPORT] for s in subjects]
    )
    result, _ = query(deployment, token, path)
    assert_file_error(result, path, "line 1: missing required columns: subject_id")
    for flag in ("given_name=FIRST_NAME", "family_name=LAST_NAME", "zip=Zipcode", "state=St"):
        assert f"--column {flag}" in result.stderr


def test_a_bad_byte_met_while_streaming_cancels_and_the_agency_keeps_nothing(
    deployment, token, tmp_path
):
    """Bad UTF-8 at line 8002 (after a batch was sent): exit 65 with the line, nothing kept."""
    people = make_records(12_000, seed=8, prefix="P")
    path = write_subjects(tmp_path / "long.csv", as_subjects(people))
    lines = path.read_bytes().split(b"\n")
    lines[8001] = lines[8001].replace(b",", b",\xc4", 1)
    path.write_bytes(b"\n".join(lines))
    before = queries_kept(deployment)
    result, _ = query(deployment, token, path)
    assert_file_error(result, path, "line 8002, column 'given_name': not valid UTF-8")
    deadline = time.monotonic() + 30
    while queries_kept(deployment) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queries_kept(deployment) == before


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b"", "line 1: no header row"),
        (",".join(SUBJECT_COLUMNS).encode() + b"\n", "no subject rows to query"),
        ("subject_id,given_name\n".encode("utf-16"), "line 1: the file is UTF-16 text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 3: not a text file"),
    ],
    ids=["empty", "header only", "utf-16", "binary"],
)
def test_unreadable_subject_files_are_input_file_errors(
    deployment, token, tmp_path, content, where
):
    """Empty, header-only, UTF-16 and binary files: exit 65 with the file and line."""
    path = tmp_path / "subjects.csv"
    path.write_bytes(content)
    before = queries_kept(deployment)
    result, _ = query(deployment, token, path)
    assert_file_error(result, path, where)
    assert queries_kept(deployment) == before


def test_a_spreadsheet_with_numeric_zips_and_tins_matches_like_its_csv(deployment, token, tmp_path):
    """ZIPs and TINs typed as numbers in .xlsx keep their digits and match."""
    subjects = subjects_of(deployment)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Export"
    sheet.append(list(SUBJECT_COLUMNS))
    for s in subjects:
        sheet.append(
            [*(s[c] for c in SUBJECT_COLUMNS[:-2]), int(s["zip"]), int(s["tin"].replace("-", ""))]
        )
    for zip_cell, tin_cell in sheet.iter_rows(min_row=2, min_col=8, max_col=9):
        zip_cell.number_format = "00000"
        tin_cell.number_format = "000-00-0000"
    book.create_sheet("Notes").append(["not", "subjects"])
    path = tmp_path / "subjects.xlsx"
    book.save(path)
    result, matched = query(deployment, token, path, "--recipe", "tin_v1")
    assert result.returncode == 0, result.stderr
    assert f"reading {path} (workbook, sheet 'Export')" in result.stderr
    assert matched == expected_matches(deployment, subjects, "tin_v1") and len(matched) == 40
    wrong = query(deployment, token, path, "--sheet", "Notes")[0]
    assert_file_error(wrong, path, "line 1: missing required columns: subject_id")


def test_the_summary_and_get_query_say_why_subjects_have_no_key(deployment, token, tmp_path):
    """Subjects without a usable TIN are counted by reason in the summary and in GetQuery."""
    subjects = subjects_of(deployment, 20, 0)
    for s in subjects[:3]:
        s["tin"] = ""
    for s in subjects[3:5]:
        s["tin"] = "12345"
    subjects[5]["tin"] = "666-12-3456"
    path = write_csv(
        tmp_path / "s.csv", SUBJECT_COLUMNS, [[s[c] for c in SUBJECT_COLUMNS] for s in subjects]
    )
    result, matched = query(deployment, token, path, "--recipe", "tin_v1")
    assert result.returncode == 0, result.stderr
    assert (
        "no key for tin_v1: 6 subjects (3 no TIN [no_tin], 2 a TIN that is not nine digits"
        in result.stdout
    )
    assert len(matched) == 14
    query_id = result.stdout.split("query ", 1)[1].split(":", 1)[0]
    status = deployment.agency_client().get(query_id)
    counts = {(c.recipe, c.reason): c.count for c in status.no_key_counts}
    assert counts == {
        ("tin_v1", "no_tin"): 3,
        ("tin_v1", "tin_not_nine_digits"): 2,
        ("tin_v1", "tin_never_issued"): 1,
    }


def _submit(deployment, messages) -> grpc.RpcError | agency_pb2.QueryStatus:
    stub = agency_pb2_grpc.AgencyStub(deployment.channel(deployment.agency_address, "case-client"))
    try:
        return stub.SubmitQuery(iter(messages), timeout=30)
    except grpc.RpcError as exc:
        return exc


@pytest.mark.parametrize("end", [None, 3, 1], ids=["no end", "count too high", "count too low"])
def test_a_stream_without_its_true_end_keeps_nothing(deployment, end):
    """A SubmitQuery stream that ends without SubmitEnd, or with a wrong count, is refused."""
    header = agency_pb2.QueryHeader(
        authorization=deployment.token(), mode=MODE_ENUMS["membership"], recipe="tin_v1"
    )
    subjects = [agency_pb2.Subject(**s) for s in as_subjects(deployment.records[:2])]
    messages = [
        agency_pb2.SubmitQueryRequest(header=header),
        agency_pb2.SubmitQueryRequest(batch=agency_pb2.SubjectBatch(subjects=subjects)),
    ]
    if end is not None:
        messages.append(agency_pb2.SubmitQueryRequest(end=agency_pb2.SubmitEnd(subject_count=end)))
    before = queries_kept(deployment)
    outcome = _submit(deployment, messages)
    assert isinstance(outcome, grpc.RpcError)
    assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nothing of the query was kept" in outcome.details()
    assert queries_kept(deployment) == before


def test_build_index_reads_only_the_columns_its_recipes_need(tmp_path):
    """Records with names and addresses only: name_address_v1 builds; all recipes is refused."""
    state = tmp_path / "custodian"
    assert run("psi-custodian", "init", "--state", state).returncode == 0
    records = make_records(50, seed=4)
    header = ["RECORD_ID", "Given_Name", "Family_Name", "Street", "City", "State", "ZIP"]
    path = write_csv(
        tmp_path / "records.csv",
        header,
        [[r[h.lower()] for h in header] for r in records],
        delimiter="\t",
    )
    refused = run("psi-custodian", "build-index", "--state", state, "--records", path)
    assert_file_error(refused, path, "line 1: missing required columns: date_of_birth")
    assert "--recipe" in refused.stderr and "tin (read by tin_v1)" in refused.stderr
    built = run(
        "psi-custodian", "build-index", "--state", state, "--records", path,
        "--recipe", "name_address_v1",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "detected delimiter tab" in built.stderr
    assert "indexed 50 records into 50 keys (name_address_v1)" in built.stdout


def test_build_index_reports_a_bad_byte_with_its_line(tmp_path):
    """A Windows-1252 file with an undefined byte: the byte and its line, exit 65."""
    state = tmp_path / "custodian"
    assert run("psi-custodian", "init", "--state", state).returncode == 0
    path = write_records(tmp_path / "records.csv", make_records(10, seed=4))
    lines = path.read_bytes().split(b"\n")
    lines[7] = lines[7].replace(b",", b",\x81", 1)
    path.write_bytes(b"\n".join(lines))
    result = run(
        "psi-custodian", "build-index", "--state", state, "--records", path,
        "--encoding", "cp1252",
    )  # fmt: skip
    assert_file_error(result, path, "line 8: 0x81 is not valid cp1252")


def test_synth_subjects_reads_a_population_as_exported(tmp_path):
    """psi synth subjects takes a semicolon population with its own headers and no TINs."""
    records = make_records(200, seed=6)
    header = ["ID", "First", "Last", "DOB", "Address", "City", "State", "Zip"]
    ours = [
        "record_id",
        "given_name",
        "family_name",
        "date_of_birth",
        "street",
        "city",
        "state",
        "zip",
    ]
    path = write_csv(
        tmp_path / "population.csv", header, [[r[c] for c in ours] for r in records], delimiter=";"
    )
    args = ["synth", "subjects", "--population", path, "--n", "50", "--overlap", "0.5"]
    outputs = ["--out", tmp_path / "s.csv", "--truth", tmp_path / "t.csv"]
    refused = run("psi", *args, *outputs)
    assert_file_error(refused, path, "line 1: missing required columns: record_id")
    assert "--column record_id=ID" in refused.stderr
    mapped = [f"--column={o}={h}" for o, h in zip(ours, header, strict=True)]
    made = run("psi", *args, *outputs, *mapped)
    assert made.returncode == 0, made.stderr
    assert "not in the file, read as empty: tin" in made.stderr
    rows = [row for batch in read_rows(tmp_path / "s.csv", SUBJECT_COLUMNS) for row in batch]
    truth = [
        row for batch in read_rows(tmp_path / "t.csv", ("subject_id", "record_id")) for row in batch
    ]
    members = {row["subject_id"] for row in truth if row["record_id"]}
    assert len(rows) == 50 and len(members) == 25
    assert not any(row["tin"] for row in rows if row["subject_id"] in members)


def test_a_multi_key_query_counts_missing_keys_per_recipe(deployment, token, tmp_path):
    """Under two recipes, each subject lacking a key is counted under each recipe it lacks."""
    subjects = subjects_of(deployment, 10, 0)
    for s in subjects[:4]:
        s["tin"] = ""
    for s in subjects[2:5]:
        s["date_of_birth"] = "12/31/1980"
    path = write_csv(
        tmp_path / "s.csv", SUBJECT_COLUMNS, [[s[c] for c in SUBJECT_COLUMNS] for s in subjects]
    )
    result, matched = query(
        deployment, token, path, "--recipe", "tin_v1", "--recipe", "name_dob_v1", "--rule", "any"
    )
    assert result.returncode == 0, result.stderr
    assert len(matched) == 8
    query_id = result.stdout.split("query ", 1)[1].split(":", 1)[0]
    status = deployment.agency_client().get(query_id)
    counts = {(c.recipe, c.reason): c.count for c in status.no_key_counts}
    assert counts == {("tin_v1", "no_tin"): 4, ("name_dob_v1", "birth_date_not_valid"): 3}
    assert "no key for name_dob_v1: 3 subjects" in result.stdout
