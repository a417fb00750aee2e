"""Stable error codes. Every failure the pipeline reports carries one code, the file, and a one-line cause."""

from __future__ import annotations

#: code -> (family, what it means, how to recover). Rendered in the README's error table.
CODES: dict[str, tuple[str, str, str]] = {
    "ManifestReadFailed": ("manifest", "manifest.json is not valid JSON or cannot be read",
                           "re-deliver the export (re-run it in Cost Management) or fix the JSON"),
    "ManifestInvalid": ("manifest", "a required manifest field is missing or has a bad value, or a blob is listed twice "
                                    "or lies outside the manifest's own folder",
                        "fix the manifest (see the minimal manifest in the README); custom data without ingestion ids: "
                        "name the new delivery's files <id>__<name>.parquet with a new id, then write the manifest again"),
    "InvalidFileName": ("manifest", "a file or folder name under msexports/, exports/ or ingestion/ is not valid UTF-8 "
                                    "(copied from a share in another encoding): never read; a delivery holding it is "
                                    "refused whole (a custom folder's file set aside as <name, bytes as %XX>.quarantined), "
                                    "any other gets a record of its own (under ingestion/ it is moved out of the lake to "
                                    "config/odd-names/); the other deliveries flow",
                        "rename it in UTF-8 (`convmv -f latin1 -t utf8`, or copy it again; custom data: then write the "
                        "manifest again); a record of its own goes once the name does"),
    "PathEscapesStore": ("manifest", "a blobName or scope would read or write outside the hub root, or a part is a link "
                                     "leading out of it",
                         "fix blobName/resourceId, or copy the part instead of linking it; the export is never read"),
    "IngestionFilesNotFound": ("manifest", "a blob listed in the manifest does not exist, or a delivery's folder holds no "
                                           "file of a type its source reads (see Providers, Custom data)",
                               "upload the missing part (in a format its source reads), then `hub ingest --retry` "
                               "(custom data: write its manifest again)"),
    "ByteCountMismatch": ("manifest", "a blob's size differs from the manifest's byteCount (upload incomplete?)",
                          "re-upload the part, then `hub ingest --retry`"),
    "SchemaNotFound": ("schema", "no schema for this exportConfig.type + dataVersion, or a delivery under exports/ "
                                 "outside a known provider's folder",
                       "export a supported version (README) or add a mapping file under schemas/msexports/ "
                       "(Azure) or schemas/<provider>/; put other "
                       "clouds' deliveries under exports/<provider>/"),
    "SchemaLoadFailed": ("schema", "a schema mapping file is broken", "fix the file under schemas/msexports/ (Azure) or "
                                                                         "schemas/<provider>/"),
    "SchemaMismatch": ("schema", "the file's columns do not match its declared type/version: too few known columns, a "
                                 "column the conversion needs is missing, of a type that cannot feed it, or empty on every row",
                       "the message names the columns; check the export's type/version, or add a spelling (aliases) or "
                       "a mapping for the new layout"),
    "UnsupportedExportFileType": ("input", "a part is not .csv, .csv.gz or .parquet",
                                  "export as CSV, gzip CSV or Parquet"),
    "MalformedCsv": ("input", "a CSV row has the wrong number of fields or broken quoting",
                     "re-export; the line number is in the message"),
    "MalformedJson": ("input", "a line of a newline-JSON file (a BigQuery extract) is not a JSON object (broken JSON, "
                      "or a number, string or array)", "extract again; the line or record number is in the message"),
    "InvalidEncoding": ("input", "the file is not UTF-8", "re-export as UTF-8"),
    "CorruptFile": ("input", "the file is truncated, damaged or not what its extension says (a cut gzip, a Parquet file "
                    "with a broken footer or page)",
                    "re-upload the part, then `hub ingest --retry`"),
    "PartReadFailed": ("input", "a part cannot be opened: no read permission, or it vanished after it was listed",
                       "make the file readable by the hub (or deliver it again), then `hub ingest --retry`"),
    "InvalidValue": ("input", "a cell cannot be converted to its column type (number, date, boolean)",
                     "the message names the column and the data row (never the value); fix the export or its mapping"),
    "RowCountMismatch": ("input", "rows read differ from the manifest's dataRowCount",
                         "a part is incomplete: re-upload it, then `hub ingest --retry`"),
    "PeriodMismatch": ("input", "the rows' ChargePeriodStart lie far outside the manifest's period (startDate to endDate), "
                                "or a cost (reservation details, transactions) export's period covers more than 31 days; "
                                "another cloud's file holds rows of a "
                                "billing period other than its folder's (`BILLING_PERIOD=2024-09`, `2024-09/`), or rows of "
                                "several months with no month to file them under",
                       "fix runInfo.startDate/endDate (or export the right period, one month per run), then "
                       "`hub ingest --retry`; other clouds: deliver one billing month per month folder"),
    "PartialPeriod": ("input", "of two cost (reservation details, transactions) exports of one scope and month, "
                               "the newer does not cover every day of the "
                               "other (a month's folder is replaced whole: those days would leave the lake)",
                      "export the whole month in one run (month-to-date); the newest delivery covering the month replaces both"),
    "OutsideRetention": ("input", "a delivery holds a month older than the lake keeps (retention.ingestion.months): held "
                                  "back, never loaded (the next retention pass would delete it); the delivery is kept",
                         "set retention.ingestion.months to 0 (keep all) or enough months: the next `hub ingest` or watcher "
                         "pass loads it (no --retry needed)"),
    "SourceConflict": ("input", "another kind of report of the same provider already put this sub-account's month in the "
                                "lake (a CUR and a FOCUS export, an OCI cost report and a FOCUS report, an Azure FocusCost "
                                "and an ActualCost / AmortizedCost export of one scope): both would count the same costs; or "
                                "two versions of one AWS billing period (CUR assemblies, Data Exports executions) and no "
                                "manifest naming the current one; or custom data and a provider's deliveries in one lake folder",
                       "deliver one kind of report per account (the lake keeps the first kind); AWS: sync the period's "
                       "manifest, or only the current version; custom data: write it under custom/<name>/ (its files "
                       "and manifest were set aside as .quarantined)"),
    "PullAuthFailed": ("pull", "the bill API refused the credentials (unknown key, bad signature, no permission)",
                       "check the key and its permissions (README: `hub pull`), then pull again"),
    "PullThrottled": ("pull", "the bill API kept throttling the requests after every retry",
                      "nothing was written; the day is pulled again on the next schedule (or raise `retries`)"),
    "PullServerError": ("pull", "the bill API kept failing (HTTP 5xx, network) after every retry",
                        "nothing was written; the day is pulled again on the next schedule"),
    "PullMalformedResponse": ("pull", "the bill API answered something that is not its documented response",
                              "nothing was written; report it with the run record if it persists"),
    "PullRequestInvalid": ("pull", "the bill API refused a request's parameters (a day outside the API's range?)",
                           "check the day or month asked for; the message has the API's own code"),
    "PullTimeBudget": ("pull", "the pull's time budget ran out before the day was complete",
                       "nothing of that day was written; it is pulled on the next run (or raise `time_budget_seconds`)"),
    "PullNoData": ("pull", "the bill API has no bill lines for the day (yet)",
                   "nothing is written and the lake keeps what it had; the day is pulled again with the next refresh"),
    "AllocationConflict": ("allocation", "a rule set to `error` was hit: two same-priority tag keys with different values "
                                         "(conflict: error), or a pool without any weighted target (on_zero_weight: error)",
                           "fix the tags or the rules (config/allocation.json), then `hub allocate`"),
    "AllocationMismatch": ("allocation", "an allocation would not add up to its input (I1-I3), or its month has no Costs",
                           "nothing was written; report it with the run record (`hub status --json`)"),
    "AllocationRulesInvalid": ("allocation", "`hub ingest` / `hub watch` could not read config/allocation.json (record "
                                             "`allocate-rules`; the months stay owed)",
                               "fix the file (the message names the field): the next ingestion allocates the owed months"),
    "AfterCommitFailed": ("engine", "a run committed (its rows are in the lake), then the work after its commit failed: "
                                    "marking the folder's older deliveries superseded, or deleting the source "
                                    "(`retention.msexports.days: 0`; a blob another client holds a lease on)",
                          "nothing to redo: the run stays committed and the next `hub ingest` / `hub watch` cycle tries "
                          "that work again (release the lease or grant delete permission on the file named); a superseded "
                          "delivery's source is left to `hub retention`"),
    "PartFailed": ("engine", "a part of the delivery failed on every attempt of the Spark engine (the last error in the message)",
                   "read the task's log in the Spark UI; fix the cause, then `hub ingest --retry` (the previous month stays "
                   "visible)"),
    "InternalError": ("internal", "an unexpected error; the export is quarantined (or, during a swap, left `swapping` to be "
                      "rolled forward), nothing is lost; a storage error is told as the store said it (`HttpResponseError: "
                      "This request is not authorized…`, behind a wrapper too), credentials removed",
                      "report it with the run record (`hub status --json`)"),
}


class HubError(Exception):
    """A failure with a stable code; ``file`` names the input it concerns; ``column``, when known, the column."""

    code = "InternalError"
    column: str | None = None

    def __init__(self, message: str, *, file: str | None = None, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        assert self.code in CODES, self.code
        self.file = file
        self.message = " ".join(str(message).split())[:500]
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.code}: {self.file}: {self.message}" if self.file else f"{self.code}: {self.message}"


class ManifestError(HubError):
    code = "ManifestInvalid"


class SchemaError(HubError):
    code = "SchemaNotFound"


class InputError(HubError):
    code = "MalformedCsv"


class UsageError(Exception):
    """A caller mistake (bad root, bad option): CLI exit code 2."""
