//! `Debug` for the generated messages that carry a PIN (build.rs skips theirs): every field but
//! the PIN, so that a PIN cannot reach a log or a test failure through `{:?}`.

use std::fmt;

use crate::pb::{
    AssociateByPinRequest, GetPinResponse, LinkLegacyCustomerRequest, RegisterContractorResponse,
    ReissueCustomerPinResponse, ReissuePinResponse, RemoveAssociateResponse, RotatePinResponse,
};

const HIDDEN: &str = "<redacted>";

impl fmt::Debug for RegisterContractorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterContractorResponse")
            .field("contractor", &self.contractor)
            .field("pin", &HIDDEN)
            .field("permissions", &self.permissions)
            .field("revision", &self.revision)
            .finish()
    }
}

impl fmt::Debug for AssociateByPinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssociateByPinRequest")
            .field("pin", &HIDDEN)
            .finish()
    }
}

impl fmt::Debug for GetPinResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetPinResponse")
            .field("pin", &HIDDEN)
            .field("revision", &self.revision)
            .finish()
    }
}

impl fmt::Debug for RotatePinResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatePinResponse")
            .field("pin", &HIDDEN)
            .field("revision", &self.revision)
            .field("retired_alias_pins", &self.retired_alias_pins)
            .finish()
    }
}

impl fmt::Debug for RemoveAssociateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoveAssociateResponse")
            .field("revision", &self.revision)
            .field("pin", &HIDDEN)
            .field("retired_alias_pins", &self.retired_alias_pins)
            .finish()
    }
}

impl fmt::Debug for ReissueCustomerPinResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReissueCustomerPinResponse")
            .field("customer_pin", &HIDDEN)
            .field("expire_time", &self.expire_time)
            .field("revision", &self.revision)
            .finish()
    }
}

impl fmt::Debug for ReissuePinResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReissuePinResponse")
            .field("pin", &HIDDEN)
            .field("revision", &self.revision)
            .field("retired_alias_pins", &self.retired_alias_pins)
            .finish()
    }
}

impl fmt::Debug for LinkLegacyCustomerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkLegacyCustomerRequest")
            .field("customer_pin", &HIDDEN)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "Q4WE-3CVY-HW";

    #[test]
    fn no_message_shows_its_pin_in_debug_output() {
        let shown = [
            format!(
                "{:?}",
                RegisterContractorResponse {
                    pin: PIN.into(),
                    revision: 7,
                    ..RegisterContractorResponse::default()
                }
            ),
            format!("{:?}", AssociateByPinRequest { pin: PIN.into() }),
            format!(
                "{:?}",
                GetPinResponse {
                    pin: PIN.into(),
                    revision: 7
                }
            ),
            format!(
                "{:?}",
                RotatePinResponse {
                    pin: PIN.into(),
                    revision: 7,
                    retired_alias_pins: 1,
                }
            ),
            format!(
                "{:?}",
                RemoveAssociateResponse {
                    pin: PIN.into(),
                    revision: 7,
                    retired_alias_pins: 1,
                }
            ),
            format!(
                "{:?}",
                ReissuePinResponse {
                    pin: PIN.into(),
                    revision: 7,
                    retired_alias_pins: 1,
                }
            ),
            format!(
                "{:?}",
                ReissueCustomerPinResponse {
                    customer_pin: PIN.into(),
                    expire_time: None,
                    revision: 7,
                }
            ),
            format!(
                "{:?}",
                LinkLegacyCustomerRequest {
                    customer_pin: PIN.into()
                }
            ),
        ];
        for text in shown {
            assert!(!text.contains(PIN), "{text}");
            assert!(text.contains(HIDDEN), "{text}");
        }
    }
}
