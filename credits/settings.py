"""Every setting of the platform, typed and read once from the environment.

Settings come from variables prefixed ``CREDITS_`` (``CREDITS_DATABASE_URL`` …).
The embedded profile needs none of them; production must name its database,
broker and secret key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from credits.jobs.runtime_class_settings import ClassBoundsHours
from credits.secret_key_file import MIN_SECRET_KEY_LENGTH
from credits.setting_values import (
    BROKER_SCHEMES,
    DATABASE_SCHEMES,
    ENV_PREFIX,
    RATELIMIT_SCHEMES,
    STORAGE_SCHEMES,
    TRANSPARENCY_KEY_FILE,
    ExecutorName,
    LocalSandbox,
    LogFormat,
    Profile,
    SchedulerOrdering,
    SettingsError,
    absolute_sqlite_url,
    check_datacite,
    check_limits,
    check_origin,
    check_signer_key,
    check_verifier_keys,
    embedded_defaults,
    one_line,
    split_list,
    url_scheme,
)

# The choices a setting takes are defined in credits/setting_values.py and named here too.
__all__ = [
    "ExecutorName",
    "LocalSandbox",
    "LogFormat",
    "Profile",
    "SchedulerOrdering",
    "Settings",
    "SettingsError",
    "load_settings",
]

_URL_SCHEMES = {
    "database_url": DATABASE_SCHEMES,
    "broker_url": BROKER_SCHEMES,
    "ratelimit_storage_url": RATELIMIT_SCHEMES,
    "storage_url": STORAGE_SCHEMES,
}


class Settings(BaseSettings):
    """The platform's configuration; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    profile: Profile = Profile.EMBEDDED
    var_dir: Path = Path("var")
    # URLs that may carry a password, and the key that signs session cookies: secrets,
    # shown as '**********' in reprs and logs (read them with .get_secret_value()).
    database_url: SecretStr = SecretStr("")
    broker_url: SecretStr = SecretStr("")
    # The Celery queue tasks go to; instances sharing one broker each need their own.
    task_queue: str = Field(default="credits", min_length=1, max_length=200)
    # Unset: local on the embedded profile, kubernetes in production.
    executor: ExecutorName = ExecutorName.LOCAL
    # Production refuses the local executor (no containers, one host) unless this is set.
    allow_local_executor: bool = False
    storage_url: str = ""
    # S3 storage (storage_url s3://bucket/prefix): an endpoint for servers other than
    # AWS (SeaweedFS, MinIO); a region, credentials. Empty: the AWS environment and
    # config files decide (AWS_ACCESS_KEY_ID, ~/.aws, an instance or pod role).
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    # Earlier session keys, comma-separated, newest first: cookies they signed are still
    # accepted (and re-signed with secret_key) while a rotation rolls out; see
    # docs/operations.md. Empty: only secret_key.
    secret_key_fallbacks: SecretStr = SecretStr("")
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    database_pool_size: int = Field(default=10, ge=1, le=200)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # The production web tier (gunicorn, credits/gunicorn_conf.py): worker processes,
    # threads in each, the seconds a request may take before its worker is restarted,
    # and the seconds a worker gets to finish its requests on a reload or stop.
    web_workers: int = Field(default=2, ge=1, le=64)
    web_threads: int = Field(default=4, ge=1, le=64)
    web_timeout_seconds: int = Field(default=60, ge=1, le=3600)
    web_graceful_timeout_seconds: int = Field(default=30, ge=1, le=3600)
    # How long a gunicorn worker on PostgreSQL may keep an API token's identity in
    # memory. Any change to tokens, users or roles makes every worker forget them at
    # once (credits/identity/token_cache.py); this only bounds an identity's life if
    # a change notice were lost. 0: read every request's token from the database.
    token_cache_seconds: int = Field(default=30, ge=0, le=3600)
    # Log lines as JSON objects (each with the request id) or text; unset: JSON in
    # production, text on the embedded profile (credits/observability/logs.py).
    log_format: LogFormat | None = None
    # /metrics asks for "Authorization: Bearer <token>" when set; unset, it answers only
    # requests from the loopback address (docs/operations.md, "Metrics and alerts").
    metrics_token: SecretStr = SecretStr("")
    # Request bodies over this many bytes are refused (413) unread; usage ingestion,
    # up to 1,000 records with their evidence, takes up to the second.
    request_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    usage_request_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024**3)
    # Dataset files: the most one file and one version's files together may hold. The
    # upload routes stream bodies up to the per-file limit, not request_max_bytes.
    dataset_max_file_bytes: int = Field(default=50 * 1024**3, ge=1, le=5 * 1024**4)
    dataset_max_version_bytes: int = Field(default=500 * 1024**3, ge=1, le=50 * 1024**4)
    # Proposal attachments (a PDF project description, CVs): the largest one file, in MB;
    # the portal's upload takes a body this large instead of request_max_bytes.
    proposal_attachment_max_mb: int = Field(default=10, ge=1, le=1024)
    # Free text (also the DOI publisher): Kubernetes names and labels use its slug
    # (credits.jobs.manifests.instance_slug), which always starts with a letter.
    instance_name: str = Field(default="credits", min_length=1, max_length=63)
    # Notifications: SMTP when smtp_host is set (required in production), else a Maildir.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "credits@localhost"
    smtp_starttls: bool = True
    maildir_path: Path | None = None
    notification_digest_hour: int = Field(default=7, ge=0, le=23)
    # Runs Celery tasks in the calling process (tests, or a machine with no worker).
    task_always_eager: bool = False
    # Browser sign-in through an OpenID Connect provider (an institution's, CILogon):
    # on when an issuer is set; local passwords keep working beside it.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_display_name: str = "your institution"
    # Portal sessions end after this long without a request, and this long after sign-in
    # whatever happens; both are checked on the server from the session's timestamps.
    session_idle_hours: float = Field(default=8.0, gt=0, le=24 * 31)
    session_max_days: float = Field(default=7.0, gt=0, le=366)
    # Failed sign-ins allowed per account and per client address ("N/period;..."),
    # counted in ratelimit_storage_url: empty means the broker when it is Redis, else
    # memory (per process).
    login_limit_per_account: str = "10/minute;100/hour"
    login_limit_per_address: str = "30/minute;300/hour"
    ratelimit_storage_url: SecretStr = SecretStr("")
    # A forgotten-password link works once, for this many minutes; asking for links is
    # limited per address asked about and per client address, like failed sign-ins.
    password_reset_minutes: int = Field(default=60, ge=5, le=24 * 60)
    reset_link_limit_per_account: str = "3/15 minutes;10/day"
    reset_link_limit_per_address: str = "10/minute;50/hour"
    # Reverse proxies in front of the app whose X-Forwarded-For and -Proto are believed
    # (the client's address for throttling, HTTPS for cookies); 0 believes none.
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    # GPU telemetry: DCGM exporter /metrics URLs, comma-separated (none: NVML on this
    # host for the local executor); scraped every telemetry_interval_seconds.
    dcgm_exporter_urls: str = ""
    telemetry_interval_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Metering: usage records cover this many seconds each; a batch settles this many.
    metering_interval_seconds: int = Field(default=60, ge=1, le=86400)
    settlement_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Usage reported through the API may end at most this long ago.
    usage_late_window_hours: float = Field(default=72.0, gt=0, le=24 * 366)
    # The most GPUs one reported usage record may cover (its ``gpus``, default 1): a
    # record's GPU time may not exceed its window times its GPUs.
    usage_max_gpus: int = Field(default=64, ge=1, le=100_000)
    # Reports: energy x PUE x grid intensity gives kg CO2e (per pool; overrides per
    # flavour as "flavour=PUE:G_PER_KWH,..."); jobs under this mean GPU utilisation idle.
    energy_pue: float = Field(default=1.2, ge=1)
    grid_intensity_g_per_kwh: float = Field(default=350.0, ge=0)
    energy_by_flavour: str = ""
    idle_gpu_util_percent: float = Field(default=10.0, ge=0, le=100)
    # DOIs for dataset versions through DataCite's REST API: off unless the URL (e.g.
    # https://api.test.datacite.org), repository id, password and prefix are all set;
    # a DOI resolves to a landing page under public_url, the installation's public origin.
    datacite_url: str = ""
    datacite_repository_id: str = ""
    datacite_password: SecretStr = SecretStr("")
    datacite_prefix: str = ""
    public_url: str = ""
    # Label Studio, for labelling orders routed to it: its URL (off when empty), an API
    # token (a legacy token or a personal access token), the secret its webhooks send in
    # the X-Credits-Webhook-Secret header, and the timeout of each request.
    label_studio_url: str = ""
    label_studio_token: SecretStr = SecretStr("")
    label_studio_webhook_secret: SecretStr = SecretStr("")
    label_studio_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # How long an in-house annotator holds an item served to them before it goes back
    # to the queue for others (credits.labelling.queue).
    labelling_lease_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # The transparency log (docs/transparency.md): the Ed25519 key that signs its
    # checkpoints, as a private key string here or in a file (mode 0600, made by
    # ``credits transparency init-key``; default var_dir/transparency.key); the log's
    # origin line (default: public_url's host and path + "/log"); the public keys of
    # earlier signing keys, comma-separated, which verifiers keep accepting.
    transparency_signer_key: SecretStr = SecretStr("")
    transparency_key_file: Path | None = None
    transparency_origin: str = Field(default="", max_length=200)
    transparency_old_verifier_keys: str = ""
    # The witnesses whose co-signatures the log accepts and shows: their
    # cosignature/v1 verifier keys (type 0x04), comma-separated.
    transparency_witness_keys: str = ""

    @field_validator("energy_by_flavour")
    @classmethod
    def _energy_by_flavour_parses(cls, value: str) -> str:
        from credits.reports.energy import parse_energy_by_flavour  # noqa: PLC0415 - no cycle

        parse_energy_by_flavour(value)
        return value

    # Jobs: the longest max runtime a spec may ask for (credits are held for it).
    jobs_max_runtime_seconds: int = Field(default=7 * 86400, ge=60, le=366 * 86400)
    # A job the pool has not started this long after the scheduler started it fails.
    jobs_start_timeout_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    scheduler_policy: SchedulerOrdering = SchedulerOrdering.FAIRSHARE
    scheduler_backfill: bool = True
    # The most times a checkpointable job is moved (stopped with its grace, restarted).
    scheduler_max_moves: int = Field(default=2, ge=0, le=100)
    # Runtime classes (credits/jobs/runtime_class_settings.py): bounds in hours (none: one
    # class), and the wait that moves a queued job up one class (0: never).
    scheduler_class_bounds_hours: ClassBoundsHours = ()
    scheduler_class_aging_hours: float = Field(default=4.0, ge=0, le=24 * 3650)
    # Past GPU usage counts half as much after this many hours in the fair-share order.
    fairshare_half_life_hours: float = Field(default=168.0, gt=0, le=24 * 3650)
    # How often the embedded loop (and Celery beat) runs a scheduling pass and a reconcile.
    scheduler_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    # Local executor: GPU slots from nvidia-smi when present, else this many virtual ones.
    local_gpu_slots: int = Field(default=4, ge=0, le=64)
    local_flavour: str = Field(default="local-gpu", pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    # Local jobs run in a bubblewrap sandbox; "off" runs them as plain processes.
    local_sandbox: LocalSandbox = LocalSandbox.BWRAP
    # The unprivileged user and group jobs run as when the platform runs as root.
    local_job_uid: int = Field(default=65534, ge=1, le=2**32 - 2)
    local_job_gid: int = Field(default=65534, ge=1, le=2**32 - 2)
    # Limits of each local job's sandbox; its memory limit is the job's own request.
    local_job_max_processes: int = Field(default=1024, ge=16, le=4_194_304)
    local_job_max_open_files: int = Field(default=4096, ge=64, le=1_048_576)
    # The most of a local job's output its output.log keeps, in MB: past it the oldest
    # half is cut, so the newest output (the tail a page shows) stays.
    local_job_max_log_mb: int = Field(default=1024, ge=1, le=1024**2)
    # Flavours whose local jobs get no network (only loopback), comma-separated.
    local_offline_flavours: str = ""
    # Simulated executor: nodes as "flavour:NODESxGPUS,..." e.g. "a100-80gb:4x8".
    simulated_nodes: str = "local-gpu:1x4"
    simulated_job_seconds: float = Field(default=30.0, gt=0)
    # Kubernetes executor: Jobs go to this namespace; kubeconfig None means in-cluster
    # config, falling back to the default kubeconfig.
    kubernetes_namespace: str = Field(
        default="credits-jobs", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    )
    kubernetes_kubeconfig: Path | None = None
    kubernetes_context: str | None = None
    # The node label whose value names a GPU flavour (GPU feature discovery's product).
    kubernetes_flavour_label: str = Field(default="nvidia.com/gpu.product", min_length=1)
    # "flavour=node-label-value,..." e.g. "a100-80gb=NVIDIA-A100-SXM4-80GB"; empty: the
    # label value is the flavour name.
    kubernetes_flavours: str = ""
    kubernetes_gpu_taint_key: str = Field(default="nvidia.com/gpu", min_length=1)
    kubernetes_ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    # Kubernetes job pods run as this non-root user and group (also their fsGroup).
    kubernetes_job_uid: int = Field(default=1000, ge=1, le=2**31 - 1)
    kubernetes_job_gid: int = Field(default=1000, ge=1, le=2**31 - 1)
    # A ReadWriteMany PersistentVolumeClaim in the jobs namespace that checkpointable jobs
    # save to, each in its own folder; unset: no checkpointable job can launch there.
    kubernetes_checkpoint_claim: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
    )
    # Registries Kubernetes jobs may pull from, "ghcr.io,registry.example.org/team"
    # (a registry, or a registry and a repository prefix); empty: any.
    job_image_registries: str = ""

    @field_validator("job_image_registries")
    @classmethod
    def _job_image_registries_parse(cls, value: str) -> str:
        from credits.jobs.images import parse_registries  # noqa: PLC0415 - no domain import at load

        parse_registries(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _production_runs_jobs_on_kubernetes(cls, data: Any) -> Any:
        unset = isinstance(data, dict) and not data.get("executor")
        if unset and str(data.get("profile", "")).strip() == Profile.PRODUCTION.value:
            return {**data, "executor": ExecutorName.KUBERNETES.value}
        return data

    @field_validator("transparency_signer_key")
    @classmethod
    def _transparency_signer_key_parses(cls, value: SecretStr) -> SecretStr:
        check_signer_key(value.get_secret_value())
        return value

    @field_validator("transparency_old_verifier_keys")
    @classmethod
    def _old_verifier_keys_parse(cls, value: str) -> str:
        check_verifier_keys(value)
        return value

    @field_validator("transparency_origin")
    @classmethod
    def _transparency_origin_is_a_key_name(cls, value: str) -> str:
        check_origin(value)
        return value

    @field_validator("var_dir", "maildir_path", "kubernetes_kubeconfig", "transparency_key_file")
    @classmethod
    def _paths_are_absolute(cls, value: Path | None) -> Path | None:
        # Job runners and workers start in other working directories: a relative
        # path would name another place there.
        return None if value is None else value.expanduser().resolve()

    @field_validator("database_url", "broker_url")
    @classmethod
    def _sqlite_paths_are_absolute(cls, value: SecretStr) -> SecretStr:
        return SecretStr(absolute_sqlite_url(value.get_secret_value()))

    @field_validator("database_url", "broker_url", "ratelimit_storage_url", "storage_url")
    @classmethod
    def _url_scheme_is_supported(cls, value: SecretStr | str, info: ValidationInfo) -> Any:
        url = value.get_secret_value() if isinstance(value, SecretStr) else value
        schemes = _URL_SCHEMES[str(info.field_name)]
        if url and url_scheme(url) not in schemes:
            raise ValueError(f"scheme must be one of {', '.join(schemes)}")
        return value

    @field_validator(
        "login_limit_per_account",
        "login_limit_per_address",
        "reset_link_limit_per_account",
        "reset_link_limit_per_address",
    )
    @classmethod
    def _login_limits_parse(cls, value: str) -> str:
        check_limits(value)
        return value

    @model_validator(mode="after")
    def _datacite_is_all_or_nothing(self) -> Self:
        check_datacite(
            {
                "datacite_url": self.datacite_url,
                "datacite_repository_id": self.datacite_repository_id,
                "datacite_password": self.datacite_password.get_secret_value(),
                "datacite_prefix": self.datacite_prefix,
            },
            public_url=self.public_url,
        )
        return self

    @model_validator(mode="after")
    def _label_studio_has_a_url_and_token(self) -> Self:
        url = self.label_studio_url
        if url and url_scheme(url) not in {"http", "https"}:
            raise ValueError(f"{ENV_PREFIX}LABEL_STUDIO_URL must be an http(s) URL")
        if url and not self.label_studio_token.get_secret_value():
            raise ValueError(
                f"{ENV_PREFIX}LABEL_STUDIO_URL needs {ENV_PREFIX}LABEL_STUDIO_TOKEN, an API token"
            )
        return self

    @property
    def dois_enabled(self) -> bool:
        """True when every DataCite setting is given (the validator refuses some of them)."""
        return bool(self.datacite_url)

    @model_validator(mode="after")
    def _s3_keys_come_in_pairs(self) -> Self:
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key.get_secret_value()):
            raise ValueError(
                f"{ENV_PREFIX}S3_ACCESS_KEY_ID and {ENV_PREFIX}S3_SECRET_ACCESS_KEY go together"
            )
        return self

    @model_validator(mode="after")
    def _production_names_its_services(self) -> Self:
        if self.profile is not Profile.PRODUCTION:
            return self
        if self.executor is ExecutorName.LOCAL and not self.allow_local_executor:
            raise ValueError(
                f"{ENV_PREFIX}EXECUTOR=local runs jobs on this host without containers; "
                f"production refuses it unless {ENV_PREFIX}ALLOW_LOCAL_EXECUTOR=true"
            )
        required = {
            "database_url": self.database_url.get_secret_value(),
            "broker_url": self.broker_url.get_secret_value(),
            "storage_url": self.storage_url,
            "secret_key": self.secret_key.get_secret_value(),
        }
        for name, value in required.items():
            if not value:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} is required in production")
        if len(self.secret_key.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"{ENV_PREFIX}SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters"
            )
        if any(len(key) < MIN_SECRET_KEY_LENGTH for key in self.old_secret_keys):
            raise ValueError(
                f"each of {ENV_PREFIX}SECRET_KEY_FALLBACKS must be at least "
                f"{MIN_SECRET_KEY_LENGTH} characters"
            )
        return self

    @property
    def old_secret_keys(self) -> list[str]:
        """The earlier session keys still accepted, newest first."""
        return split_list(self.secret_key_fallbacks.get_secret_value())

    @property
    def effective_log_format(self) -> LogFormat:
        """The setting, else JSON in production and text on the embedded profile."""
        if self.log_format is not None:
            return self.log_format
        return LogFormat.JSON if self.profile is Profile.PRODUCTION else LogFormat.TEXT

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.get_secret_value().startswith("sqlite")

    @property
    def ratelimit_storage(self) -> str:
        """Where failed sign-ins are counted: the setting, else a Redis broker, else memory."""
        configured = self.ratelimit_storage_url.get_secret_value()
        if configured:
            return configured
        broker = self.broker_url.get_secret_value()
        return broker if url_scheme(broker) in {"redis", "rediss"} else "memory://"

    @property
    def dcgm_urls(self) -> list[str]:
        return [url.strip() for url in self.dcgm_exporter_urls.split(",") if url.strip()]

    @property
    def offline_flavours(self) -> frozenset[str]:
        return frozenset(
            name.strip() for name in self.local_offline_flavours.split(",") if name.strip()
        )

    @property
    def transparency_key_path(self) -> Path:
        """Where ``credits transparency init-key`` writes the log's signing key."""
        return self.transparency_key_file or self.var_dir / TRANSPARENCY_KEY_FILE

    @property
    def log_origin(self) -> str:
        """The transparency log's origin: the setting, else public_url's host and path
        followed by ``/log``, else ``localhost/log``."""
        if self.transparency_origin:
            return self.transparency_origin
        _, _, rest = self.public_url.partition("://")
        base = rest.split("?", 1)[0].split("#", 1)[0].rstrip("/")
        return f"{base or 'localhost'}/log"

    @property
    def old_verifier_keys(self) -> list[str]:
        return split_list(self.transparency_old_verifier_keys)

    @property
    def witness_keys(self) -> list[str]:
        return split_list(self.transparency_witness_keys)

    @property
    def jobs_dir(self) -> Path:
        """Where the local executor keeps each job's request, status and logs."""
        return self.var_dir / "jobs"

    @property
    def maildir(self) -> Path:
        """Where the embedded profile delivers mail: ``maildir_path`` or ``var_dir/maildir``."""
        return self.maildir_path or self.var_dir / "maildir"


def load_settings(**overrides: Any) -> Settings:
    """Reads the environment (and ``overrides``), filling embedded defaults.

    Raises :class:`SettingsError` with one line naming the bad setting.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(one_line(error)) from None
    if settings.profile is Profile.EMBEDDED:
        settings = embedded_defaults(settings)
    return settings
