# Scaleway resources of privacy-functions. Everything lives in an EU region (policy 6.3).
terraform {
  required_version = ">= 1.5"
  required_providers {
    scaleway = {
      source = "scaleway/scaleway"
      # 2.76: noncurrent_version_expiration in bucket lifecycle rules; 2.60: dead_letter_queue of SQS queues.
      version = ">= 2.76, < 3.0"
    }
  }
}

variable "region" {
  type    = string
  default = "fr-par"
  validation {
    condition     = contains(["fr-par", "nl-ams", "pl-waw"], var.region)
    error_message = "Policy 6.3: no data outside the EU (fr-par, nl-ams, pl-waw)."
  }
}

variable "project_id" {
  type = string
}

# The database users' passwords (set them in the environment: TF_VAR_db_admin_password, TF_VAR_db_functions_password).
variable "db_admin_password" {
  type      = string
  sensitive = true
}

variable "db_functions_password" {
  type      = string
  sensitive = true
}

# Who may reach the database's public endpoint (CIDR -> why). Scaleway Functions have no fixed egress
# addresses: until the functions join the Private Network below, the list must include their range.
variable "db_allowed_cidrs" {
  type = map(string)
  validation {
    condition     = length(var.db_allowed_cidrs) > 0 && !contains(keys(var.db_allowed_cidrs), "0.0.0.0/0")
    error_message = "List the addresses that may reach the database (never 0.0.0.0/0)."
  }
}

locals {
  # The queues of serverless.yml's SQS triggers (and of shared/platform/messages.py), each with its
  # visibility timeout: longer than the timeout of the worker its trigger calls, so a message is never
  # delivered again while a worker still runs it (tests/unit/test_terraform.py checks both).
  queues = {
    "stripe-events"             = 60  # stripe-webhook-worker: 30 s
    "consent-propagation"       = 60  # withdraw-consent-worker: 30 s
    "erasure-steps"             = 360 # erase-account-worker: 300 s
    "export-requests"           = 960 # export-on-request-worker: 900 s
    "retention-chunks"          = 360 # expire-inactive-accounts-worker: 300 s
    "rectification-propagation" = 120 # rectify-account-worker: 60 s
    "policy-notices"            = 360 # announce-policy-changes-worker: 300 s
  }
  # Deliveries before a message goes to its dead-letter queue: serverless.yml's QUEUE_MAX_ATTEMPTS.
  queue_max_attempts = 3
  buckets = {
    exports   = scaleway_object_bucket.exports.name
    documents = scaleway_object_bucket.documents.name
    archive   = scaleway_object_bucket.archive.name
    logs      = scaleway_object_bucket.logs.name
  }
}

provider "scaleway" {
  region     = var.region
  project_id = var.project_id
}

# --- Object storage ------------------------------------------------------------------

# Data exports (Art. 15/20): deleted 7 days after creation, whatever the code does.
resource "scaleway_object_bucket" "exports" {
  name = "jfb-privacy-exports"
  lifecycle_rule {
    id      = "exports-7-days"
    enabled = true
    # An export interrupted mid-upload leaves parts of a personal-data archive: gone after a day.
    abort_incomplete_multipart_upload_days = 1
    expiration {
      days = 7
    }
    # log-rotation checks it: a version left behind would outlive the 7 days.
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}

# Invoice PDFs and other documents of live accounts.
resource "scaleway_object_bucket" "documents" {
  name = "jfb-documents"
  versioning {
    enabled = true
  }
  lifecycle_rule {
    id                                     = "documents-noncurrent"
    enabled                                = true
    abort_incomplete_multipart_upload_days = 1
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }
}

# Restricted archive: what the law requires us to keep after an erasure (invoices, 10 years).
# Also holds the signed audit checkpoints under audit/checkpoints/ (AUDIT_CHECKPOINT_PREFIX), each written with
# its own COMPLIANCE retention (REQUEST_RECORDS_RETENTION_MONTHS): the database cannot roll them back.
# Object Lock can only be enabled when the bucket is created.
resource "scaleway_object_bucket" "archive" {
  name                = "jfb-retention-archive"
  object_lock_enabled = true
  versioning {
    enabled = true
  }
  # Nothing here expires by lifecycle (Object Lock decides); only interrupted uploads go.
  lifecycle_rule {
    id                                     = "archive-incomplete-uploads"
    enabled                                = true
    abort_incomplete_multipart_upload_days = 1
  }
}

resource "scaleway_object_bucket_lock_configuration" "archive" {
  bucket = scaleway_object_bucket.archive.name
  rule {
    default_retention {
      mode  = "COMPLIANCE"
      years = 10
    }
  }
}

# Date-partitioned connection and access logs: 1 year (LCEN), noncurrent versions included.
resource "scaleway_object_bucket" "logs" {
  name = "jfb-logs"
  versioning {
    enabled = true
  }
  lifecycle_rule {
    id      = "logs-1-year"
    enabled = true
    prefix  = "logs/"
    expiration {
      days = 365
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
  lifecycle_rule {
    id                                     = "logs-incomplete-uploads"
    enabled                                = true
    abort_incomplete_multipart_upload_days = 1
  }
}

# Every bucket private: objects leave only through the functions (signed links for exports).
resource "scaleway_object_bucket_acl" "private" {
  for_each = local.buckets
  bucket   = each.value
  acl      = "private"
}

# The functions' own Object Storage key (S3_ACCESS_KEY / S3_SECRET_KEY of serverless.yml): objects
# only, in this project; it can read the buckets' settings (log-rotation checks the lifecycle) but
# change neither lifecycle nor lock. The deploy key stays with the operator.
resource "scaleway_iam_application" "functions_storage" {
  name        = "privacy-functions-storage"
  description = "Object Storage access of the privacy functions (objects of this project only)"
}

resource "scaleway_iam_policy" "functions_storage" {
  name           = "privacy-functions-storage"
  description    = "Objects of the privacy buckets: read, write, delete; bucket settings: read only"
  application_id = scaleway_iam_application.functions_storage.id
  rule {
    project_ids = [var.project_id]
    permission_set_names = [
      "ObjectStorageObjectsRead",
      "ObjectStorageObjectsWrite",
      "ObjectStorageObjectsDelete",
      "ObjectStorageBucketsRead",
    ]
  }
}

resource "scaleway_iam_api_key" "functions_storage" {
  application_id     = scaleway_iam_application.functions_storage.id
  description        = "privacy-functions: S3_ACCESS_KEY / S3_SECRET_KEY"
  default_project_id = var.project_id # the S3 API resolves bucket names in the key's default project
}

# --- Queues (Scaleway Queues, SQS protocol) ------------------------------------------

resource "scaleway_mnq_sqs" "main" {}

resource "scaleway_mnq_sqs_credentials" "functions" {
  name = "privacy-functions"
  permissions {
    can_publish = true
    can_receive = true
    can_manage  = false
  }
}

# The queues are created with a manager key of their own: the functions' key can publish and receive only.
resource "scaleway_mnq_sqs_credentials" "manager" {
  name = "privacy-functions-terraform"
  permissions {
    can_publish = false
    can_receive = false
    can_manage  = true
  }
}

resource "scaleway_mnq_sqs_queue" "dead_letter" {
  for_each        = local.queues
  name            = "${each.key}-dlq"
  sqs_endpoint    = scaleway_mnq_sqs.main.endpoint
  access_key      = scaleway_mnq_sqs_credentials.manager.access_key
  secret_key      = scaleway_mnq_sqs_credentials.manager.secret_key
  message_max_age = 1209600 # 14 days to look at a dead letter (it holds ids, no personal data)
}

resource "scaleway_mnq_sqs_queue" "work" {
  for_each                   = local.queues
  name                       = each.key
  sqs_endpoint               = scaleway_mnq_sqs.main.endpoint
  access_key                 = scaleway_mnq_sqs_credentials.manager.access_key
  secret_key                 = scaleway_mnq_sqs_credentials.manager.secret_key
  visibility_timeout_seconds = each.value
  dead_letter_queue {
    id                = scaleway_mnq_sqs_queue.dead_letter[each.key].id
    max_receive_count = local.queue_max_attempts
  }
}

# --- Database ------------------------------------------------------------------------

# The database's private endpoint: functions attached to this network (Serverless VPC integration)
# reach it without the public endpoint; the operator's migrations use the public one, behind the ACL.
resource "scaleway_vpc_private_network" "main" {
  name = "privacy-functions"
}

resource "scaleway_rdb_instance" "main" {
  name                      = "privacy-functions"
  node_type                 = "DB-DEV-S"
  engine                    = "PostgreSQL-16"
  is_ha_cluster             = false
  disable_backup            = false
  encryption_at_rest        = true
  backup_schedule_retention = 7
  # The first user administers the instance (break-glass only); no function uses it.
  user_name = "privacy_admin"
  password  = var.db_admin_password
  private_network {
    pn_id       = scaleway_vpc_private_network.main.id
    enable_ipam = true
  }
  load_balancer {}
}

resource "scaleway_rdb_acl" "main" {
  instance_id = scaleway_rdb_instance.main.id
  dynamic "acl_rules" {
    for_each = var.db_allowed_cidrs
    content {
      ip          = acl_rules.key
      description = acl_rules.value
    }
  }
}

resource "scaleway_rdb_database" "privacy" {
  instance_id = scaleway_rdb_instance.main.id
  name        = "privacy"
}

# The functions' user (DATABASE_URL) also runs `privacy-functions migrate`: it owns the tables, so
# log-rotation can create and drop the monthly log partitions and VACUUM after an erasure. It is no
# instance admin and has no right on any other database.
resource "scaleway_rdb_user" "functions" {
  instance_id = scaleway_rdb_instance.main.id
  name        = "privacy_functions"
  password    = var.db_functions_password
  is_admin    = false
}

resource "scaleway_rdb_privilege" "functions" {
  instance_id   = scaleway_rdb_instance.main.id
  user_name     = scaleway_rdb_user.functions.name
  database_name = scaleway_rdb_database.privacy.name
  permission    = "all"
}

# --- What serverless.yml needs (README: "Deploy") ---------------------------------------

# Scaleway queue URLs are <endpoint>/project-<project id>/<queue name>: QUEUE_URL_PREFIX.
output "queue_url_prefix" {
  value = trimsuffix(scaleway_mnq_sqs_queue.work["export-requests"].url, "export-requests")
}

output "sqs_access_key" {
  value     = scaleway_mnq_sqs_credentials.functions.access_key
  sensitive = true
}

output "sqs_secret_key" {
  value     = scaleway_mnq_sqs_credentials.functions.secret_key
  sensitive = true
}

output "s3_access_key" {
  value     = scaleway_iam_api_key.functions_storage.access_key
  sensitive = true
}

output "s3_secret_key" {
  value     = scaleway_iam_api_key.functions_storage.secret_key
  sensitive = true
}

# TLS required; the user is the functions' own.
output "database_url" {
  value = format(
    "postgresql://%s:%s@%s:%d/%s?sslmode=require",
    scaleway_rdb_user.functions.name,
    urlencode(var.db_functions_password),
    scaleway_rdb_instance.main.load_balancer[0].ip,
    scaleway_rdb_instance.main.load_balancer[0].port,
    scaleway_rdb_database.privacy.name,
  )
  sensitive = true
}

output "database_private_endpoint" {
  value = "${scaleway_rdb_instance.main.private_network[0].ip}:${scaleway_rdb_instance.main.private_network[0].port}"
}
