/** Units used across the object model. Every quantity is an integer; the unit is in the name. */
import { Schema } from "effect"

/** Milliseconds since the cluster epoch (virtual in the simulator, Unix time on real hosts). */
export const Millis = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
export const Bytes = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
export const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
/** A share of one resource in hundredths of a percent (0..10000), so no floats cross the wire. */
export const PercentHundredths = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 10_000 }))
export const Port = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65_535 }))
export const VlanId = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4094 }))
export const Vni = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 16_777_215 }))
export const Mtu = Schema.Int.check(Schema.isBetween({ minimum: 576, maximum: 9216 }))

/** A dotted IPv4 address or a colon-separated IPv6 address. */
export const IpAddress = Schema.String.check(
  Schema.isPattern(
    /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$|^[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}$/,
    {
      message: "Expected an IPv4 or IPv6 address",
    },
  ),
)

/** An IPv4 prefix in CIDR notation, e.g. 198.18.0.0/24. */
export const Ipv4Cidr = Schema.String.check(
  Schema.isPattern(
    /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\/(?:3[0-2]|[12]?\d)$/,
    {
      message: "Expected an IPv4 prefix such as 198.18.0.0/24",
    },
  ),
)

export const Name = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(128))
export const Labels = Schema.Record(Schema.String, Schema.String)
