import CRdKafka

// The consumer's C-callback side: what librdkafka calls back into (rebalances, commit outcomes,
// errors) and the state those calls reach through its opaque pointer. `KafkaConsumer` is the API.

/// State the C callbacks reach through librdkafka's opaque pointer.
final class ConsumerContext {
    let rebalance: RebalanceHandlers
    let onError: (KafkaError) -> Void
    var handle: OpaquePointer?
    var assigned = Set<TopicPartition>()
    var revokedDuringPoll = false

    let onCommitFailure: ([TopicPartitionOffset], KafkaErrorCode) -> Void
    /// Asynchronous commits sent and not yet answered (poll thread only).
    var asyncCommitsInFlight = 0
    /// Deferred mode: changes recorded by the callback, applied by `complete` when the owner says.
    var pending: [DeferredRebalance] = []
    /// Set by `close`: from then on changes complete inside the callback.
    var closing = false

    /// One recorded change: what the owner sees, and librdkafka's list (a copy) to apply.
    struct DeferredRebalance {
        let event: RebalanceEvent
        let list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        let cooperative: Bool
    }

    init(rebalance: RebalanceHandlers, onError: @escaping (KafkaError) -> Void,
         onCommitFailure: @escaping ([TopicPartitionOffset], KafkaErrorCode) -> Void) {
        self.rebalance = rebalance
        self.onError = onError
        self.onCommitFailure = onCommitFailure
    }

    /// A commit's outcome: the offsets that failed (all of them on a request-level error).
    func handleCommit(_ code: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        asyncCommitsInFlight = max(asyncCommitsInFlight - 1, 0)
        guard let list else { return }
        var failed = [KafkaErrorCode: [TopicPartitionOffset]]()
        for index in 0..<Int(list.pointee.cnt) {
            let element = list.pointee.elems[index]
            let error = element.err != RD_KAFKA_RESP_ERR_NO_ERROR ? element.err : code
            // Nothing to commit is not a failure.
            guard error != RD_KAFKA_RESP_ERR_NO_ERROR, error != RD_KAFKA_RESP_ERR__NO_OFFSET else { continue }
            failed[KafkaErrorCode(error), default: []].append(TopicPartitionOffset(String(cString: element.topic), element.partition, element.offset))
        }
        for (error, offsets) in failed { onCommitFailure(offsets, error) }
    }

    /// One change from librdkafka. Deferred mode records it (with a copy of the list) for the
    /// owner; otherwise the handlers run and the change is applied at once. Either way `apply`
    /// does the assign or unassign.
    func handleRebalance(_ handle: OpaquePointer, _ code: rd_kafka_resp_err_t,
                         _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let partitions = NativePartitionList.partitions(of: list)
        let cooperative = String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE"
        let event: RebalanceEvent
        switch code {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS: event = .assigned(partitions)
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS: event = .revoked(partitions, lost: rd_kafka_assignment_lost(handle) != 0)
        default:
            onError(KafkaError(operation: "rebalance", code: KafkaErrorCode(code)))
            event = .revoked(Array(assigned), lost: true)
        }
        // A rebalance error carries no list to apply: everything is unassigned.
        let known = code == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS || code == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
        if rebalance.deferred && !closing {
            pending.append(DeferredRebalance(event: event, list: known ? rd_kafka_topic_partition_list_copy(list) : nil,
                                             cooperative: cooperative))
            return
        }
        switch event {
        case .assigned(let partitions):
            rebalance.partitionsAssigned(partitions)
        case .revoked(let partitions, let lost):
            if known { rebalance.partitionsRevoked(partitions, lost) }
            revokedDuringPoll = true
        }
        apply(event, list: known ? list : nil, cooperative: cooperative)
    }

    /// Applies a recorded change and frees its list copy.
    func complete(_ change: DeferredRebalance) {
        defer { if let list = change.list { rd_kafka_topic_partition_list_destroy(list) } }
        apply(change.event, list: change.list, cooperative: change.cooperative)
    }

    /// Assigns or unassigns in librdkafka and in `assigned`; no `list` (a rebalance error)
    /// unassigns everything.
    private func apply(_ event: RebalanceEvent, list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, cooperative: Bool) {
        guard let handle else { return }
        switch event {
        case .assigned(let partitions):
            assigned.formUnion(partitions)
            if cooperative {
                if let error = rd_kafka_incremental_assign(handle, list) {
                    onError(KafkaError(operation: "incremental assign", consuming: error))
                }
            } else {
                report(rd_kafka_assign(handle, list), "assign")
            }
        case .revoked(let partitions, _):
            assigned.subtract(partitions)
            if list == nil {
                assigned.removeAll()
                report(rd_kafka_assign(handle, nil), "unassign after rebalance error")
            } else if cooperative {
                if let error = rd_kafka_incremental_unassign(handle, list) {
                    onError(KafkaError(operation: "incremental unassign", consuming: error))
                }
            } else {
                report(rd_kafka_assign(handle, nil), "unassign")
            }
        }
    }

    private func report(_ code: rd_kafka_resp_err_t, _ operation: String) {
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { onError(KafkaError(operation: operation, code: KafkaErrorCode(code))) }
    }
}

let consumerRebalanceCallback:
    @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
                    UnsafeMutableRawPointer?) -> Void = { handle, code, list, opaque in
    guard let handle, let list, let opaque else { return }
    Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue().handleRebalance(handle, code, list)
}

/// The answer to one bounded commit: the first error (request-level or per partition), or no error.
final class CommitReply {
    var error: rd_kafka_resp_err_t?

    func record(_ code: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        var first = code
        if first == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            for index in 0..<Int(list.pointee.cnt) where list.pointee.elems[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
                first = list.pointee.elems[index].err
                break
            }
        }
        error = first
    }
}

let commitReplyCallback:
    @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
                    UnsafeMutableRawPointer?) -> Void = { _, code, list, opaque in
    guard let opaque else { return }
    Unmanaged<CommitReply>.fromOpaque(opaque).takeUnretainedValue().record(code, list)
}

let consumerCommitCallback:
    @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
                    UnsafeMutableRawPointer?) -> Void = { _, code, list, opaque in
    guard let opaque else { return }
    Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue().handleCommit(code, list)
}

let consumerErrorCallback:
    @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
        handle, code, reason, opaque in
    guard let opaque else { return }
    let context = Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue()
    let errorCode = KafkaErrorCode(rawValue: code)
    var isFatal = false
    var message = reason.map { String(cString: $0) } ?? errorCode.description
    if errorCode == .fatal, let handle {
        var buffer = [CChar](repeating: 0, count: 512)
        let original = rd_kafka_fatal_error(handle, &buffer, buffer.count)
        message = "\(KafkaErrorCode(original).name): " + String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        isFatal = true
    }
    context.onError(KafkaError(operation: "consumer", code: errorCode, message: message, isFatal: isFatal))
}
