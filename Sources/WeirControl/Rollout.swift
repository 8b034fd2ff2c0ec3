import Foundation

/// A bundle as the control topic names it: where it is and which manifest it must have.
public struct BundleRef: Sendable, Equatable, Hashable, Codable {
    public var version: String
    /// `file:///path`, an absolute path, `s3://bucket/prefix` or `https://host/prefix`.
    public var location: String
    /// SHA-256 of its `manifest.json`: the bundle's identity.
    public var sha256: String
    public init(version: String, location: String, sha256: String) {
        self.version = version
        self.location = location
        self.sha256 = sha256
    }

    /// The directory of a `file://` location or plain path; nil (with the reason) for anything else.
    public func directory() -> Result<URL, ControlMessageError> {
        if location.hasPrefix("file://") {
            guard let url = URL(string: location), url.isFileURL, !url.path.isEmpty else {
                return .failure(ControlMessageError("bundle: '\(location)' is not a valid file:// URL"))
            }
            return .success(url)
        }
        if location.hasPrefix("/") { return .success(URL(fileURLWithPath: location)) }
        if let scheme = location.split(separator: ":", maxSplits: 1).first, location.contains("://") {
            return .failure(ControlMessageError("bundle: '\(scheme)://' locations are not supported; use s3://bucket/prefix, https:// or file://"))
        }
        return .failure(ControlMessageError("bundle: '\(location)' is neither a file:// URL nor an absolute path"))
    }
}

/// A bundle on trial next to the primary one.
public struct RolloutCandidate: Sendable, Equatable {
    public var bundle: BundleRef
    /// `canary` or `shadow`.
    public var mode: RolloutMode
    /// The canary's share of keys; nil for shadow.
    public var percent: Double?
    public init(bundle: BundleRef, mode: RolloutMode, percent: Double?) {
        self.bundle = bundle
        self.mode = mode
        self.percent = percent
    }
}

/// Why a control message cannot apply: a stable code (for metrics and status records) and text.
public struct ControlRejection: Error, Sendable, Equatable, CustomStringConvertible {
    /// The documented rejection codes (docs/contracts.md); the raw value is what status records,
    /// logs and `weir_control_messages_total{reason}` carry.
    public enum Code: String, Sendable, CaseIterable {
        case missingSignature = "missing-signature"
        case badSignature = "bad-signature"
        /// Signed by an Ed25519 key the worker does not hold.
        case unknownKey = "unknown-key"
        /// A value over `control.max-message-bytes`, refused unread.
        case tooLarge = "too-large"
        case malformed
        case staleSequence = "stale-sequence"
        case invalidTransition = "invalid-transition"
        case bundleUnavailable = "bundle-unavailable"
        case bundleHash = "bundle-hash"
        case bundleInvalid = "bundle-invalid"
        case incompatibleSchema = "incompatible-schema"
        case warmUpFailed = "warm-up-failed"
    }

    public let code: Code
    public let reason: String
    /// Waiting may fix it (a store that did not answer): the worker retries with backoff.
    public let retryable: Bool
    public init(_ code: Code, _ reason: String, retryable: Bool = false) {
        self.code = code
        self.reason = reason
        self.retryable = retryable
    }
    public var description: String { "\(code.rawValue): \(reason)" }
}

/// What one model's workers should serve, as the control topic has said so far. Pure: applying
/// a message computes the next state without loading anything, so workers (live and on replay)
/// and `weir control` (to fill in rollback targets) agree on it.
public struct RolloutState: Sendable, Equatable {
    /// The bundle answering events (primary route).
    public var active: BundleRef
    /// The bundle `rollback` returns to after a `replace` deploy, until `promote` ends the rollout.
    public var previous: BundleRef?
    /// A canary or shadow on trial.
    public var candidate: RolloutCandidate?
    /// Consumption paused by an operator.
    public var paused = false
    /// The last applied message's sequence (0: none yet).
    public var lastSequence: Int64 = 0
    /// The sequence of the deploy that began the trial (`trial`): what a group decision about the
    /// trial names, so pauses and resumes since do not make it miss, and a new deploy of the same
    /// bundle is a new trial.
    public var trialSince: Int64 = 0

    public init(active: BundleRef) { self.active = active }

    /// The bundles this state needs loaded.
    public var bundles: [BundleRef] {
        [active] + [previous, candidate?.bundle].compactMap { $0 }
    }

    /// The state after `message`, or why it cannot apply. Checks sequence and transition only;
    /// the caller checks that the bundles it names are real and compatible.
    public func applying(_ message: ControlMessage) -> Result<RolloutState, ControlRejection> {
        guard message.sequence > lastSequence else {
            return .failure(ControlRejection(.staleSequence, "sequence \(message.sequence) is not above the last applied \(lastSequence) for \(message.model)"))
        }
        var next = self
        next.lastSequence = message.sequence
        let named = message.bundleRef
        switch message.action {
        case .deploy:
            guard let named, let strategy = message.strategy else {
                return .failure(ControlRejection(.malformed, "a deploy needs version, bundle, sha256 and strategy"))
            }
            switch strategy.kind {
            case .replace:
                if named.sha256 != active.sha256 {
                    next.previous = active
                    next.trialSince = message.sequence
                }
                next.active = named
                next.candidate = nil
            case .canary, .shadow:
                if named.sha256 == active.sha256 {
                    return .failure(ControlRejection(.invalidTransition, "\(named.version) is already the active version; a \(strategy.kind.rawValue) needs a different bundle"))
                }
                next.candidate = RolloutCandidate(bundle: named, mode: strategy.kind, percent: strategy.kind == .canary ? strategy.percent : nil)
                next.trialSince = message.sequence
            }
        case .promote:
            if let candidate {
                if let named, named.sha256 != candidate.bundle.sha256 {
                    return .failure(ControlRejection(.invalidTransition, "promote names \(named.version) (\(named.sha256.prefix(12))) but the candidate is \(candidate.bundle.version) (\(candidate.bundle.sha256.prefix(12)))"))
                }
                next.active = candidate.bundle
                next.candidate = nil
                next.previous = nil
            } else if let named, named.sha256 != active.sha256 {
                // A compacted topic's last word: serve the named bundle.
                next.active = named
                next.previous = nil
            } else if previous != nil || named != nil {
                next.previous = nil
            } else {
                return .failure(ControlRejection(.invalidTransition, "nothing to promote: no candidate and no rollout in progress"))
            }
        case .rollback:
            if candidate != nil {
                next.candidate = nil
            } else if let previous {
                next.active = previous
                next.previous = nil
            } else if let named, named.sha256 != active.sha256 {
                next.active = named
            } else if named == nil {
                return .failure(ControlRejection(.invalidTransition, "nothing to roll back: no candidate and no previous version loaded"))
            }
        case .pause:
            next.paused = true
        case .resume:
            next.paused = false
        }
        return .success(next)
    }

    /// The state after an automatic rollback (no message, no sequence): the trial bundle leaves.
    /// Nil when nothing is on trial.
    public func rolledBackAutomatically() -> RolloutState? {
        var next = self
        if candidate != nil {
            next.candidate = nil
        } else if let previous {
            next.active = previous
            next.previous = nil
        } else {
            return nil
        }
        return next
    }

    /// The state after an automatic promotion (the outcome test's): the candidate serves
    /// everything, or an unpromoted `replace` is final. Nil when nothing is on trial.
    public func promotedAutomatically() -> RolloutState? {
        var next = self
        if let candidate {
            next.active = candidate.bundle
            next.candidate = nil
            next.previous = nil
        } else if previous != nil {
            next.previous = nil
        } else {
            return nil
        }
        return next
    }

    /// The bundle on trial (candidate, or the active one of an unpromoted `replace`), if any.
    public var trial: BundleRef? { candidate?.bundle ?? (previous != nil ? active : nil) }
}

/// Stable canary routing: a record key goes the same way on every worker and every replay.
public enum CanaryRouting {
    /// The key's bucket in 0..<10_000 (FNV-1a 64 with a final mix).
    @inline(__always)
    public static func bucket(_ key: UnsafeRawBufferPointer) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        hash ^= hash >> 33
        hash = hash &* 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return Int(hash % 10_000)
    }

    /// Whether `key` is served by a canary of `percent`.
    public static func isCanary(_ key: UnsafeRawBufferPointer, percent: Double) -> Bool {
        bucket(key) < Int((percent * 100).rounded())
    }
}
