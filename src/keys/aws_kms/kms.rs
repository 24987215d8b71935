//! The door to AWS KMS: [`Kms`] holds the SDK client, and nothing outside this file can reach
//! it. Every KMS operation `keys::aws_kms` calls is a method of one role's view, generated with its
//! IAM action from one table (`door!`): the serving code ([`Serving`]: [`CALLED_ACTIONS`]),
//! `describe` ([`Describing`]: [`DESCRIBE_ACTIONS`]) and key administration ([`Administering`]:
//! [`ADMIN_ACTIONS`]). An operation missing from the table does not compile, and a role's view
//! offers only that role's operations, so the action lists the IAM policies are tested against
//! are the operations the code can call.

use aws_sdk_kms::Client;

/// The SDK client behind the door; its only field is private to this file.
pub(super) struct Kms {
    client: Client,
}

impl Kms {
    /// Builds the SDK client from a resolved configuration.
    pub(super) fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        Self {
            client: Client::new(sdk_config),
        }
    }

    /// The operations the sidecar calls while serving.
    pub(super) fn serving(&self) -> Serving<'_> {
        Serving {
            client: &self.client,
        }
    }

    /// The operations [`crate::keys::KeyProvider::describe`] calls.
    pub(super) fn describing(&self) -> Describing<'_> {
        Describing {
            client: &self.client,
        }
    }

    /// The operations key administration calls, besides those of [`Kms::describing`].
    pub(super) fn administering(&self) -> Administering<'_> {
        Administering {
            client: &self.client,
        }
    }
}

/// The serving role's view of the client: the operations of [`CALLED_ACTIONS`].
#[derive(Clone, Copy)]
pub(super) struct Serving<'a> {
    client: &'a Client,
}

/// The `describe` role's view of the client: the operations of [`DESCRIBE_ACTIONS`].
#[derive(Clone, Copy)]
pub(super) struct Describing<'a> {
    client: &'a Client,
}

/// The administration role's view of the client: the operations of [`ADMIN_ACTIONS`].
#[derive(Clone, Copy)]
pub(super) struct Administering<'a> {
    client: &'a Client,
}

/// One row per operation of a role: its IAM action, then the SDK method of the same name, which
/// the view forwards (returning the SDK's fluent builder). Generates the role's public action
/// list, the view's methods and, for the unit tests, the view's `ROWS` (action, method name).
macro_rules! door {
    ($(
        $(#[$list_doc:meta])*
        $list:ident on $view:ident {
            $($action:literal => $method:ident -> $builder:ident,)+
        }
    )+) => {$(
        $(#[$list_doc])*
        pub const $list: &[&str] = &[$($action),+];

        impl $view<'_> {
            /// Each operation's IAM action and method name, in the order of the list.
            #[cfg(test)]
            pub(super) const ROWS: &'static [(&'static str, &'static str)] =
                &[$(($action, stringify!($method))),+];

            $(
                #[doc = concat!("`", $action, "`.")]
                pub(super) fn $method(
                    &self,
                ) -> aws_sdk_kms::operation::$method::builders::$builder {
                    self.client.$method()
                }
            )+
        }
    )+};
}

door! {
    /// The KMS API actions the sidecar calls while serving (mint, unwrap, health). The IAM
    /// policy `policies/aws/kmscodec-sidecar-iam.json` grants exactly these; a test checks it.
    /// `ListResourceTags` reads the decrypt-only tag once per minted data key.
    CALLED_ACTIONS on Serving {
        "kms:GenerateDataKey" => generate_data_key -> GenerateDataKeyFluentBuilder,
        "kms:Decrypt" => decrypt -> DecryptFluentBuilder,
        "kms:ListResourceTags" => list_resource_tags -> ListResourceTagsFluentBuilder,
    }

    /// The KMS API actions [`KeyProvider::describe`](crate::keys::KeyProvider::describe) calls.
    /// Only operators' tooling (`keys describe`) uses them; the sidecar role is not granted them
    /// (see `policies/README.md`).
    DESCRIBE_ACTIONS on Describing {
        "kms:DescribeKey" => describe_key -> DescribeKeyFluentBuilder,
        "kms:GetKeyRotationStatus" => get_key_rotation_status -> GetKeyRotationStatusFluentBuilder,
    }

    /// The KMS API actions key administration ([`KeyAdmin`](crate::keys::KeyAdmin):
    /// `kmscodec keys ...`) calls, besides [`DESCRIBE_ACTIONS`].
    /// `policies/aws/kmscodec-admin-iam.json` grants exactly both lists; a test checks it.
    ADMIN_ACTIONS on Administering {
        "kms:CancelKeyDeletion" => cancel_key_deletion -> CancelKeyDeletionFluentBuilder,
        "kms:CreateAlias" => create_alias -> CreateAliasFluentBuilder,
        "kms:CreateKey" => create_key -> CreateKeyFluentBuilder,
        "kms:DescribeKey" => describe_key -> DescribeKeyFluentBuilder,
        "kms:EnableKey" => enable_key -> EnableKeyFluentBuilder,
        "kms:EnableKeyRotation" => enable_key_rotation -> EnableKeyRotationFluentBuilder,
        "kms:ListAliases" => list_aliases -> ListAliasesFluentBuilder,
        "kms:ListKeyRotations" => list_key_rotations -> ListKeyRotationsFluentBuilder,
        "kms:ListResourceTags" => list_resource_tags -> ListResourceTagsFluentBuilder,
        "kms:RotateKeyOnDemand" => rotate_key_on_demand -> RotateKeyOnDemandFluentBuilder,
        "kms:ScheduleKeyDeletion" => schedule_key_deletion -> ScheduleKeyDeletionFluentBuilder,
        "kms:TagResource" => tag_resource -> TagResourceFluentBuilder,
        "kms:UntagResource" => untag_resource -> UntagResourceFluentBuilder,
    }
}

/// The KMS API actions the sidecar calls that the encryption context conditions cannot cover
/// (they take no context): granted by a separate statement of the sidecar's policies.
pub const CONTEXTLESS_ACTIONS: &[&str] = &["kms:ListResourceTags"];
