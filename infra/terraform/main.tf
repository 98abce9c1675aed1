# Scaleway resources of privacy-functions. Everything lives in an EU region (policy 6.3).
terraform {
  required_providers {
    scaleway = {
      source  = "scaleway/scaleway"
      version = ">= 2.40"
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

# Queues consumed by the workers of serverless.yml (each with a dead-letter queue).
variable "queues" {
  type    = list(string)
  default = ["privacy-work", "stripe-events", "consent-propagation", "erasure-steps", "export-requests", "retention-chunks", "rectification-propagation", "policy-notices"]
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
    id      = "documents-noncurrent"
    enabled = true
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

resource "scaleway_mnq_sqs_queue" "dead_letter" {
  for_each   = toset(var.queues)
  name       = "${each.key}-dlq"
  sqs_endpoint = scaleway_mnq_sqs.main.endpoint
  access_key = scaleway_mnq_sqs_credentials.functions.access_key
  secret_key = scaleway_mnq_sqs_credentials.functions.secret_key
  message_max_age = 1209600
}

resource "scaleway_mnq_sqs_queue" "work" {
  for_each                   = toset(var.queues)
  name                       = each.key
  sqs_endpoint               = scaleway_mnq_sqs.main.endpoint
  access_key                 = scaleway_mnq_sqs_credentials.functions.access_key
  secret_key                 = scaleway_mnq_sqs_credentials.functions.secret_key
  visibility_timeout_seconds = 300
  dead_letter_queue {
    id                = scaleway_mnq_sqs_queue.dead_letter[each.key].id
    max_receive_count = 3
  }
}

# --- Database ------------------------------------------------------------------------

resource "scaleway_rdb_instance" "main" {
  name           = "privacy-functions"
  node_type      = "DB-DEV-S"
  engine         = "PostgreSQL-16"
  is_ha_cluster  = false
  disable_backup = false
  encryption_at_rest = true
  backup_schedule_retention = 7
}

resource "scaleway_rdb_database" "privacy" {
  instance_id = scaleway_rdb_instance.main.id
  name        = "privacy"
}

output "queue_url_prefix" {
  value = "${scaleway_mnq_sqs.main.endpoint}/${var.project_id}/"
}
