// SPDX-License-Identifier: MIT
pragma solidity 0.8.33;

/// @title xswap Channel: two-party payment channels for ETH and ERC-20 tokens, with a secret
///        registry for hash-locked payments.
/// @notice One contract holds every channel. A channel is identified by
///         `keccak256(abi.encode(chainid, address(this), a, b, token, challengePeriod, salt))`
///         (`Params`, passed in calldata by every call and hashed, as HTLC.sol does), so nothing
///         about a channel but its amounts and its closing commitment is stored.
///
/// ## Off-chain states
/// Both parties co-sign EIP-712 `State`s (domain: name "xswap Channel", version "1", chain id,
/// this contract). A state holds: the channel id, a version (1, 2, ...: higher replaces lower),
/// both balances, the hash of the pending locks, the cumulative on-chain deposits of each
/// party that it accounts for, the cumulative withdrawals of each party that it accounts for,
/// the time until which `withdraw` may execute those withdrawals (`withdrawExpiry`, 0: never)
/// and a final flag. It must satisfy
///     balanceA + balanceB + sum(lock amounts) + withdrawnA + withdrawnB == depositA + depositB.
/// A lock is (from, amount, hashlock = sha256(preimage), expiry); at most `MAX_LOCKS` per
/// state; `locksHash = keccak256(abi.encode(locks))`, or zero when there are none.
///
/// ## What a state pays
/// The contract stores, per channel, each party's cumulative deposits and withdrawals
/// ("net_X = deposits_X - withdrawals_X" on chain). A state pays party X
///     pay_X = balance_X + net_X(chain) - (deposit_X - withdrawn_X)(state)
/// plus the locks resolved in X's favour. So a top-up the state does not know of goes back to
/// its depositor, and a withdrawal the state records but that was never executed is paid at
/// settlement: a party's total receipts under a state (withdrawn + paid) are its balance, its
/// withdrawn total and its top-ups the state does not know of, whenever its withdrawals were
/// executed. A state whose sum does not match, or that would pay a party less than zero, is
/// rejected; W1 below is why that never happens to the latest state.
///
/// ## Withdrawals (W1)
/// `withdraw(state)` executes a state's withdrawn totals only while `block.timestamp <
/// state.withdrawExpiry`, so an abandoned withdrawal lapses. The off-chain side
/// (`ChannelRef::check_next` in Rust) signs a state N after P, the last state it signed (the
/// counterparty may hold it co-signed), only if, reading the chain at a final block of time
/// t: P is not final; N.version > P.version; N's deposit totals are at least P's and at most
/// the chain's; N's withdrawn totals are at least the withdrawals already executed, and at
/// least P's unless t >= P.withdrawExpiry (a lapsed withdrawal may be dropped); and
/// N.withdrawExpiry >= P.withdrawExpiry unless t >= P.withdrawExpiry.
/// W1 Executing any co-signed withdrawal, at any time, never makes the latest state S that an
///    honest party signed pay anyone less than zero, so S stays usable. (Review case: D_A =
///    D_B = 100; v5, B withdraws 50 until T; v9, A 200 B 0, signed after T: executing v5
///    reverts `WithdrawalExpired`, and A closes with v9.)
///    (a) By the expiry rule, every signed state not yet expired at a signing expires no later
///        than the state then signed: an expiry only moves earlier once the previous one, hence
///        every earlier running one, has passed.
///    (b) A state E whose total for X exceeds S's cannot be executed once S is signed: some
///        state between E and S lowered the total below E's, which needed every earlier
///        state, E included, expired (a) at a final block; and E was not executed before that,
///        or the chain's total would have been E's, below which no state may go.
///    (c) So the chain's withdrawn totals W never exceed S's w; its deposits D never fall below
///        S's d (only final deposits are counted); S pays X b_X + (D_X - d_X) + (w_X - W_X) +
///        resolved locks >= 0.
///    The chain is read at a final block: a reorg could otherwise move an execution unseen at
///    signing before the expiry. No "last withdrawn version" is stored (close/update refusing
///    states older than an executed withdrawal): such a state either pays consistently (each
///    party's total receipts as above) or is refused as Underfunded, and `update` replaces it.
///
/// ## Life of a channel (two storage words per channel; the second is zero until needed)
/// - `deposit` / `depositToken` by a party: opens the channel on the first call, tops it up
///   afterwards. Refused while closing and after settlement.
/// - `withdraw(state)`: pays each party `state.withdrawn_X - withdrawn_X(chain)` while the
///   channel stays open, before `state.withdrawExpiry`. A withdrawal is a co-signed state whose
///   withdrawn total grew (its balance shrank by the same amount); any unexpired state with
///   higher totals can be executed, once (see W1).
/// - `cooperativeClose(final state)`: one transaction, pays both, no locks allowed. While the
///   channel is closing, `settleFinal(frozen, final state)` does the same at once with the
///   nets frozen at close (so a party that front-runs a cooperative close with `close`, or
///   closes with an old state, cannot impose the challenge period on a final state).
/// - `close(state)` or `closeUnsigned()` (the implicit version-0 state: everyone gets their own
///   deposits back), by a party only, starts the challenge period (`challengePeriod` seconds,
///   fixed per channel in `Params`, between `MIN_CHALLENGE_PERIOD` and `MAX_CHALLENGE_PERIOD`).
///   Until its deadline anyone holding a co-signed state of higher version (a party or its
///   watchtower) can `update`. The closing data (a `Record`, emitted in `Closing`) is kept as
///   two hashes: the part fixed at close (`Frozen`: deadline, nets) in the channel word, the
///   outcome (version, payouts, locks hash) beside the version in the second word. `update`
///   passes back only the fixed part and needs a higher version than the stored one, so an
///   honest update cannot be made to fail by lower updates mined before it; `settle` passes
///   back the whole latest record.
/// - `settle` from the deadline on: each lock pays its receiver if `revealedAt[hashlock]` is
///   non-zero and strictly before the lock's expiry (HTLC.sol's claim rule, `block.timestamp <
///   expiry`); otherwise it returns to its sender, which is decided from the expiry on. A
///   lock's expiry counts as min(expiry, deadline + `MAX_LOCK_TTL`), so no state, whatever
///   its locks, holds a settlement more than `MAX_LOCK_TTL` (30 days) after the deadline, i.e.
///   `MAX_CHALLENGE_PERIOD + MAX_LOCK_TTL` (60 days) after the close. The cap is applied at
///   settlement rather than by refusing far locks at close: refusing would make a signed state
///   unusable (a cheater could get the honest party to sign a far lock, then close with an
///   older state the honest side could no longer answer); capping keeps every signed state
///   usable, and never changes the outcome of a lock expiring at most `MAX_LOCK_TTL` after it
///   was signed (the deadline is after the signing time), which is what the off-chain side
///   signs.
/// - `reveal(preimage)` records `block.timestamp` under `sha256(preimage)`, once.
/// - A payout that fails (a reverting receiver, a blacklisting token) is credited to the
///   receiver, who takes it later with `withdrawCredit(token, to)`.
///
/// ## Invariants and why the attacks fail
/// I1 Conservation: over a channel's life, deposits == withdrawals + settlement payouts +
///    credits made from them. `close`/`update` check the state's sum, so the record's
///    payA + payB + locked == net_A + net_B == what the channel holds; `settle` moves lock
///    amounts between the two and pays exactly that; `cooperativeClose`/`settleFinal` pay a
///    lock-free state's payA + payB == net_A + net_B. `withdraw` pays the increase of the
///    withdrawn totals and then checks that the same state pays nobody less than zero, so what
///    remains covers the state. No channel can pay out another channel's funds.
/// I2 Only co-signed states move value: every state-taking entry point checks both parties'
///    signatures over the EIP-712 digest, which binds the chain id and this contract (domain)
///    and the channel id, which binds both parties, the token, the challenge period and the
///    salt. A state of another channel, contract or chain recovers another address: refused.
///    Signatures: v must be 27/28, s in the lower half of the curve order (no malleable twin),
///    ecrecover must return the expected party (never zero: parties are non-zero).
///    Versions start at 1; version 0 is the unsigned "deposits back" state, usable only by a
///    party through `closeUnsigned`.
/// I3 Replay of an old state: `update` needs a strictly higher version than the stored one
///    and is possible until the deadline; the challenge period is fixed at open. What an
///    updater passes back (`Frozen`) never changes during a closing, so a cheater cannot
///    invalidate a pending honest update by mining other updates first: it can only raise the
///    stored version, and a version at or above the honest one is a state at least as new.
///    An old state can only start a closing, never end one early: only a final state ends
///    one early (`settleFinal`), and only if its version is at least the stored one (a final
///    state is the last one both parties sign, so it is never an old state). Only the parties
///    can start a closing, so a third party cannot turn a co-signed state seen in the mempool
///    (a pending cooperative close's final state, a withdrawal) into a challenge-period wait;
///    a party that does so is answered by `settleFinal` (final state) or pays the withdrawal
///    at settlement.
/// I4 One closing, one settlement: a channel word is 0 (never opened), OPEN (amounts), CLOSING
///    (tag + 248-bit hash of the frozen part) or SETTLED (a tombstone kept forever, so a
///    settled channel id can never be reopened and its old states replayed). Deposits and
///    withdrawals need OPEN; `update` needs the frozen part, `settle` the frozen part and the
///    current outcome (version and 192-bit hash); `settle`, `settleFinal` and
///    `cooperativeClose` write SETTLED (and clear the second word) before paying.
/// I5 Re-entrancy: every function that calls out (token deposits, withdraw, cooperativeClose,
///    settleFinal, settle, withdrawCredit) holds a transient lock and writes its state before
///    calling out; functions that do not call out (ETH deposit, close, closeUnsigned, update,
///    reveal) keep no invariant open across a call. A re-entered call therefore fails or sees
///    the final state (e.g. a party re-entering `close` from a withdrawal's payout closes with
///    nets that already count the whole withdrawal, whose other payout still follows).
/// I6 Tokens: deposits pull with `transferFrom` and require the balance to grow by exactly the
///    amount (fee-on-transfer and re-entrant double counting are refused, as in HTLC.sol);
///    tokens that return no bool are accepted. Rebasing tokens are not supported.
/// I7 A party that cannot be paid cannot block the other: payouts forward at most
///    `PAYOUT_GAS` (the caller must leave enough gas for that, so a third party cannot starve a
///    payout into failing) and a failed payout becomes a credit.
/// I8 Secret registry: first reveal wins, later reveals revert, so a late reveal cannot move a
///    recorded time past a lock's expiry. The registry is global (one for every channel of
///    this contract; anyone may reveal any preimage) and permanent (never reset): a lock whose
///    hashlock was revealed before its expiry pays its receiver, whenever, by whomever and for
///    whichever purpose the preimage was revealed. A lock on an already revealed hashlock is
///    therefore an unconditional payment: never sign a lock whose hashlock is revealed
///    (`revealedAt`, Rust `ChannelRef::revealed_at`) or reuse a hashlock. The receiver of a
///    lock must get its reveal mined in a block whose timestamp is strictly before the lock's
///    expiry (as a claim in HTLC.sol): a reveal in a block stamped exactly at the expiry is
///    too late.
/// I9 Bounded settlement: nothing a state holds keeps funds locked beyond deadline +
///    `MAX_LOCK_TTL` (lock expiries are capped there at settlement), and `MAX_LOCKS` bounds
///    `settle`'s gas; a withdrawal beyond its `withdrawExpiry` cannot be executed (W1).
/// Attacker roles, re-read after the review fixes:
/// - A party may sign anything, close with any state it holds, front-run the other's
///   transactions with its own (an `update` with a lower version: the honest one still passes;
///   `close` before a pending `cooperativeClose`: `settleFinal` ends it at once; `update` with
///   the final state before `settleFinal`: still accepted, the version is not below), top up,
///   execute any unexpired withdrawal at any time (W1), reveal or withhold preimages, sign far
///   lock expiries (capped, I9) or refuse to cooperate. It can delay the other by at most
///   the challenge period plus the lock cap, never take more than a state the other signed.
/// - A third party can only `update` (raises the version with co-signed states), execute
///   co-signed states that pay the parties (`withdraw`, `cooperativeClose`, `settleFinal`,
///   `settle`) and `reveal`; it cannot close, deposit or withdraw a credit but its own, nor
///   starve a payout of gas (I7).
/// - A token may re-enter, lie about transfers, return nothing or burn gas: deposits need the
///   exact balance delta, payouts are gas-capped and credited on failure, and it can only hurt
///   channels of that same token (credits are per token).
/// - A receiver may revert or re-enter: its payout becomes a credit (I7), re-entry fails or
///   sees the final state (I5), the other party is paid either way.
/// Not handled here (off-chain protocol duties, enforced by the Rust side where noted):
/// never sign a state counting a deposit that is not final on chain, after a final state, or
/// breaking W1's rules (`ChannelRef::check_next`); never sign a lock expiring more than
/// `MAX_LOCK_TTL` from now (`ChannelRef::check`), whose hashlock is revealed
/// (`ChannelRef::revealed_at`) or was used before; keep the latest state and its locks
/// (`update` and `settle` need the locks, which only the close/update calldata carries) and
/// watch for `Closing` (any one gives the `Frozen` part `update` needs). Parties sign with
/// ECDSA keys (EOAs, or EIP-7702 accounts): EIP-1271 contract signatures are not supported.
contract Channel {
    // ---------------------------------------------------------------- types

    /// @notice The parameters hashed into the channel id.
    struct Params {
        address a;
        address b;
        /// ERC-20 token, or zero for ETH.
        address token;
        /// Seconds between a unilateral close and the earliest settlement.
        uint64 challengePeriod;
        bytes32 salt;
    }

    /// @notice A co-signed channel state, without its channel id (derived from `Params`; the
    ///         EIP-712 struct `State` starts with `bytes32 channelId`).
    struct State {
        uint64 version;
        uint128 balanceA;
        uint128 balanceB;
        bytes32 locksHash;
        uint128 depositA;
        uint128 depositB;
        uint128 withdrawnA;
        uint128 withdrawnB;
        /// `withdraw` accepts this state only while `block.timestamp < withdrawExpiry` (0: never).
        uint64 withdrawExpiry;
        bool isFinal;
    }

    /// @notice A pending hash-locked payment from `from` to the other party.
    struct Lock {
        address from;
        uint128 amount;
        bytes32 hashlock;
        uint64 expiry;
    }

    /// @notice A 65-byte ECDSA signature.
    struct Sig {
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice What a closing fixes for its whole life (at `close`/`closeUnsigned`): the
    ///         deadline and each party's on-chain net. `update` takes it, so that an update
    ///         prepared against any `Closing` event of this closing stays valid however many
    ///         other updates are mined before it.
    struct Frozen {
        uint64 deadline;
        int256 netA;
        int256 netB;
    }

    /// @notice The closing data of a channel (see `Closing`): the `Frozen` part (deadline,
    ///         nets) and the current outcome (version, payouts before locks, locks hash).
    struct Record {
        uint64 version;
        uint64 deadline;
        /// On-chain deposits minus withdrawals of each party, frozen at close.
        int256 netA;
        int256 netB;
        /// What each party gets before the locks are resolved.
        uint256 payA;
        uint256 payB;
        bytes32 locksHash;
    }

    // ---------------------------------------------------------------- constants

    /// @notice The most pending locks a state may hold (bounds `settle`'s gas to ~0.3 M).
    uint256 public constant MAX_LOCKS = 64;
    /// @notice Bounds of `Params.challengePeriod`.
    uint256 public constant MIN_CHALLENGE_PERIOD = 1 hours;
    uint256 public constant MAX_CHALLENGE_PERIOD = 30 days;
    /// @notice The longest a lock can hold a settlement after the closing deadline: at
    ///         settlement a lock's expiry counts as min(expiry, deadline + MAX_LOCK_TTL).
    uint256 public constant MAX_LOCK_TTL = 30 days;
    /// @notice Gas forwarded to each payout (ETH transfer or token `transfer`).
    uint256 public constant PAYOUT_GAS = 100_000;
    /// @notice Largest cumulative deposit per party (2^120 - 1).
    uint256 public constant MAX_DEPOSIT = (1 << 120) - 1;

    bytes32 public constant STATE_TYPEHASH = keccak256(
        "State(bytes32 channelId,uint64 version,uint128 balanceA,uint128 balanceB,bytes32 locksHash,"
        "uint128 depositA,uint128 depositB,uint128 withdrawnA,uint128 withdrawnB,"
        "uint64 withdrawExpiry,bool isFinal)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("xswap Channel");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// secp256k1 order / 2.
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    // Channel word (`_channels`): tag in the top byte.
    //   OPEN / OPEN_W: depositA in bits 120..239, depositB in bits 0..119 (OPEN_W: `_second`
    //   holds withdrawnA << 128 | withdrawnB; OPEN: `_second` is zero).
    //   CLOSING: the low 248 bits of keccak256(abi.encode(deadline, netA, netB)), written once
    //   at close; `_second` holds version << 192 | the low 192 bits of
    //   keccak256(abi.encode(payA, payB, locksHash)), rewritten by each `update`.
    //   SETTLED: nothing else (`_second` is zero).
    uint256 private constant OPEN = 1 << 248;
    uint256 private constant OPEN_W = 2 << 248;
    uint256 private constant CLOSING = 3 << 248;
    uint256 private constant SETTLED = 4 << 248;
    uint256 private constant MASK120 = (1 << 120) - 1;
    uint256 private constant MASK128 = (1 << 128) - 1;
    uint256 private constant MASK248 = (1 << 248) - 1;
    uint256 private constant MASK192 = (1 << 192) - 1;
    /// Gas that must be left before a payout so that the callee surely gets `PAYOUT_GAS`
    /// (63/64 rule) and the caller can still record a credit.
    uint256 private constant PAYOUT_GAS_NEEDED = PAYOUT_GAS + PAYOUT_GAS / 63 + 40_000;

    // ---------------------------------------------------------------- storage

    mapping(bytes32 id => uint256) private _channels;
    /// Withdrawals while open, the current outcome while closing (see the channel word).
    mapping(bytes32 id => uint256) private _second;
    /// @notice When `sha256(preimage)` was first revealed (block timestamp), or 0. Global to
    ///         every channel and permanent: see I8.
    mapping(bytes32 hashlock => uint256) public revealedAt;
    /// @notice Failed payouts, withdrawable by their owner.
    mapping(address account => mapping(address token => uint256)) public credit;
    bool private transient _entered;

    uint256 private immutable _chainId;
    bytes32 private immutable _domain;

    // ---------------------------------------------------------------- errors

    error ZeroAmount();
    error BadParams();
    error NotParty();
    error WrongToken();
    error AmountTooLarge();
    error NotOpen();
    error NotClosing();
    error BadRecord();
    error BadSignature();
    error StaleVersion();
    error TooManyLocks();
    error BadLock();
    error LocksMismatch();
    error SumMismatch();
    error Underfunded();
    error NotFinal();
    error PendingLocks();
    error ChallengeOpen();
    error ChallengeOver();
    error LockPending(bytes32 hashlock);
    error NothingToWithdraw();
    error StaleWithdrawal();
    error WithdrawalExpired();
    error AlreadyRevealed();
    error NoCredit();
    error TransferFailed();
    error BalanceMismatch();
    error InsufficientGas();
    error Reentrancy();

    // ---------------------------------------------------------------- events

    event Opened(
        bytes32 indexed channelId, address indexed a, address indexed b, address token, uint64 challengePeriod, bytes32 salt
    );
    event Deposited(bytes32 indexed channelId, address indexed party, uint256 amount, uint256 totalDeposit);
    event Withdrawn(bytes32 indexed channelId, uint256 withdrawnA, uint256 withdrawnB);
    /// @notice A channel is closing with this record (from `close`, `closeUnsigned`, `update`).
    event Closing(
        bytes32 indexed channelId,
        uint64 version,
        uint64 deadline,
        int256 netA,
        int256 netB,
        uint256 payA,
        uint256 payB,
        bytes32 locksHash
    );
    event Settled(bytes32 indexed channelId, uint256 paidA, uint256 paidB);
    event Revealed(bytes32 indexed hashlock, bytes32 preimage);
    event Credited(address indexed account, address indexed token, uint256 amount);
    event CreditWithdrawn(address indexed account, address indexed token, address to, uint256 amount);

    modifier nonReentrant() {
        if (_entered) revert Reentrancy();
        _entered = true;
        _;
        _entered = false;
    }

    constructor() {
        _chainId = block.chainid;
        _domain = _buildDomain();
    }

    // ---------------------------------------------------------------- deposits

    /// @notice Deposits `msg.value` wei for the sender (a party) into an ETH channel, opening
    ///         it on the first deposit.
    function deposit(Params calldata p) external payable {
        if (p.token != address(0)) revert WrongToken();
        _deposit(p, msg.value);
    }

    /// @notice Deposits `amount` of the channel's token (pulled with `transferFrom`; approve
    ///         first), opening the channel on the first deposit.
    function depositToken(Params calldata p, uint256 amount) external nonReentrant {
        if (p.token == address(0)) revert WrongToken();
        _deposit(p, amount);
        _pull(p.token, amount);
    }

    // ---------------------------------------------------------------- while open

    /// @notice Pays out the withdrawals recorded in a co-signed state beyond those already
    ///         executed. Anyone may send it; it pays the parties.
    function withdraw(Params calldata p, State calldata s, Lock[] calldata locks, Sig calldata sa, Sig calldata sb)
        external
        nonReentrant
    {
        bytes32 id = _id(p);
        uint256 w = _channels[id];
        uint256 tag = w & ~MASK248;
        if (tag != OPEN && tag != OPEN_W) revert NotOpen();
        uint256 wA;
        uint256 wB;
        if (tag == OPEN_W) {
            uint256 wd = _second[id];
            wA = wd >> 128;
            wB = wd & MASK128;
        }
        if (s.withdrawnA < wA || s.withdrawnB < wB) revert StaleWithdrawal();
        uint256 outA = s.withdrawnA - wA;
        uint256 outB = s.withdrawnB - wB;
        if (outA == 0 && outB == 0) revert NothingToWithdraw();
        // An abandoned withdrawal lapses, after which a later state may drop it (see W1).
        if (block.timestamp >= s.withdrawExpiry) revert WithdrawalExpired();
        _verify(id, p, s, sa, sb);
        // The same state must still pay nobody less than zero once these withdrawals are made.
        _payouts(
            p,
            s,
            locks,
            int256((w >> 120) & MASK120) - int256(uint256(s.withdrawnA)),
            int256(w & MASK120) - int256(uint256(s.withdrawnB))
        );
        _second[id] = (uint256(s.withdrawnA) << 128) | s.withdrawnB;
        if (tag == OPEN) _channels[id] = (w & MASK248) | OPEN_W;
        emit Withdrawn(id, s.withdrawnA, s.withdrawnB);
        _pay(p.token, p.a, outA);
        _pay(p.token, p.b, outB);
    }

    /// @notice Closes the channel at once with a co-signed final state without locks, paying
    ///         both parties. Anyone may send it.
    function cooperativeClose(Params calldata p, State calldata s, Sig calldata sa, Sig calldata sb)
        external
        nonReentrant
    {
        bytes32 id = _id(p);
        uint256 w = _channels[id];
        (int256 netA, int256 netB) = _nets(id, w);
        if (!s.isFinal) revert NotFinal();
        if (s.locksHash != 0) revert PendingLocks();
        _verify(id, p, s, sa, sb);
        (uint256 payA, uint256 payB) = _bases(s, 0, netA, netB);
        if (w & ~MASK248 == OPEN_W) delete _second[id];
        _channels[id] = SETTLED;
        emit Settled(id, payA, payB);
        _pay(p.token, p.a, payA);
        _pay(p.token, p.b, payB);
    }

    // ---------------------------------------------------------------- unilateral close

    /// @notice Starts the challenge period with a co-signed state. Only a party may send it (a
    ///         third party replaying a state seen in the mempool, such as the final state of a
    ///         pending `cooperativeClose`, could otherwise force a challenge-period wait).
    function close(Params calldata p, State calldata s, Lock[] calldata locks, Sig calldata sa, Sig calldata sb)
        external
    {
        if (msg.sender != p.a && msg.sender != p.b) revert NotParty();
        bytes32 id = _id(p);
        uint256 w = _channels[id];
        (int256 netA, int256 netB) = _nets(id, w);
        _verify(id, p, s, sa, sb);
        (uint256 payA, uint256 payB, bytes32 lh) = _payouts(p, s, locks, netA, netB);
        _enterClosing(
            id, Record(s.version, uint64(block.timestamp + p.challengePeriod), netA, netB, payA, payB, lh)
        );
    }

    /// @notice Starts the challenge period with the implicit version-0 state (each party gets
    ///         its deposits minus its withdrawals). Only a party may send it: for a counterparty
    ///         that never signed anything.
    function closeUnsigned(Params calldata p) external {
        if (msg.sender != p.a && msg.sender != p.b) revert NotParty();
        bytes32 id = _id(p);
        uint256 w = _channels[id];
        (int256 netA, int256 netB) = _nets(id, w);
        if (netA < 0 || netB < 0) revert Underfunded();
        _enterClosing(
            id,
            Record(0, uint64(block.timestamp + p.challengePeriod), netA, netB, uint256(netA), uint256(netB), 0)
        );
    }

    /// @notice Replaces the closing state by a co-signed state of higher version, until the
    ///         deadline. Anyone may send it (a party or its watchtower). `f` is the part of the
    ///         record fixed at close (the deadline and nets of any `Closing` event of this
    ///         closing): only it and the growth of the version are checked, so a lower update
    ///         mined first cannot make this one fail.
    function update(
        Params calldata p,
        Frozen calldata f,
        State calldata s,
        Lock[] calldata locks,
        Sig calldata sa,
        Sig calldata sb
    ) external {
        bytes32 id = _id(p);
        _checkFrozen(id, f.deadline, f.netA, f.netB);
        uint64 deadline = f.deadline;
        if (block.timestamp >= deadline) revert ChallengeOver();
        if (s.version <= _second[id] >> 192) revert StaleVersion();
        _verify(id, p, s, sa, sb);
        int256 netA = f.netA;
        int256 netB = f.netB;
        (uint256 payA, uint256 payB, bytes32 lh) = _payouts(p, s, locks, netA, netB);
        _second[id] = _outcome(s.version, payA, payB, lh);
        _emitClosing(id, Record(s.version, deadline, netA, netB, payA, payB, lh));
    }

    /// @notice Ends a closing channel at once with a co-signed final state without locks (the
    ///         cooperative close of a channel that a party started closing, e.g. by front-running
    ///         `cooperativeClose` with `close`), before or after the deadline, paying both with
    ///         the nets frozen at close. Its version must be at least the stored one (a final
    ///         state is the last one both parties sign). Anyone may send it.
    function settleFinal(Params calldata p, Frozen calldata f, State calldata s, Sig calldata sa, Sig calldata sb)
        external
        nonReentrant
    {
        bytes32 id = _id(p);
        _checkFrozen(id, f.deadline, f.netA, f.netB);
        if (!s.isFinal) revert NotFinal();
        if (s.locksHash != 0) revert PendingLocks();
        if (s.version < _second[id] >> 192) revert StaleVersion();
        _verify(id, p, s, sa, sb);
        (uint256 payA, uint256 payB) = _bases(s, 0, f.netA, f.netB);
        _channels[id] = SETTLED;
        delete _second[id];
        emit Settled(id, payA, payB);
        _pay(p.token, p.a, payA);
        _pay(p.token, p.b, payB);
    }

    /// @notice Pays out a closed channel from its deadline on, resolving each lock with the
    ///         secret registry. Anyone may send it.
    function settle(Params calldata p, Record calldata rec, Lock[] calldata locks) external nonReentrant {
        bytes32 id = _id(p);
        _checkFrozen(id, rec.deadline, rec.netA, rec.netB);
        if (_second[id] != _outcome(rec.version, rec.payA, rec.payB, rec.locksHash)) revert BadRecord();
        if (block.timestamp < rec.deadline) revert ChallengeOpen();
        if (_hashLocks(locks) != rec.locksHash) revert LocksMismatch();
        uint256 payA = rec.payA;
        uint256 payB = rec.payB;
        address a = p.a;
        // No lock holds the settlement longer than MAX_LOCK_TTL after the deadline.
        uint256 cap = uint256(rec.deadline) + MAX_LOCK_TTL;
        for (uint256 i; i < locks.length; ++i) {
            Lock calldata l = locks[i];
            uint256 expiry = l.expiry < cap ? l.expiry : cap;
            uint256 t = revealedAt[l.hashlock];
            // As HTLC.sol's claim rule (`block.timestamp < expiry`): the receiver's reveal must
            // be mined strictly before the expiry; from the expiry on the lock is decided.
            bool toReceiver = t != 0 && t < expiry;
            if (!toReceiver && block.timestamp < expiry) revert LockPending(l.hashlock);
            // A lock from A goes to B when revealed in time; a lock from B goes to B when not.
            if ((l.from == a) == toReceiver) payB += l.amount;
            else payA += l.amount;
        }
        _channels[id] = SETTLED;
        delete _second[id];
        emit Settled(id, payA, payB);
        _pay(p.token, a, payA);
        _pay(p.token, p.b, payB);
    }

    // ---------------------------------------------------------------- secrets and credits

    /// @notice Records that `preimage` is public, at this block's time, under its sha256.
    function reveal(bytes32 preimage) external {
        bytes32 h = _sha256(preimage);
        if (revealedAt[h] != 0) revert AlreadyRevealed();
        revealedAt[h] = block.timestamp;
        emit Revealed(h, preimage);
    }

    /// @notice Sends the sender's credit in `token` (zero for ETH) to `to`, forwarding all gas.
    function withdrawCredit(address token, address to) external nonReentrant {
        if (to == address(0)) revert BadParams();
        uint256 amount = credit[msg.sender][token];
        if (amount == 0) revert NoCredit();
        credit[msg.sender][token] = 0;
        emit CreditWithdrawn(msg.sender, token, to, amount);
        if (!_send(token, to, amount, gasleft())) revert TransferFailed();
    }

    // ---------------------------------------------------------------- views

    /// @notice The channel id of `p` on this chain and contract.
    function channelId(Params calldata p) external view returns (bytes32) {
        return _id(p);
    }

    /// @notice The EIP-712 digest both parties sign for state `s` of channel `p`.
    function hashState(Params calldata p, State calldata s) external view returns (bytes32) {
        return _digest(_id(p), s);
    }

    /// @notice The locks hash a state commits to.
    function hashLocks(Lock[] calldata locks) external pure returns (bytes32) {
        return _hashLocks(locks);
    }

    /// @notice The EIP-712 domain separator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @notice A channel's status (0 none, 1 open, 2 closing, 3 settled) and, while open, its
    ///         cumulative deposits and withdrawals (zero otherwise: see the `Closing` record).
    function status(bytes32 id)
        external
        view
        returns (uint8 st, uint256 depositA, uint256 depositB, uint256 withdrawnA, uint256 withdrawnB)
    {
        uint256 w = _channels[id];
        uint256 tag = w >> 248;
        if (tag == 0) return (0, 0, 0, 0, 0);
        if (tag >= 3) return (uint8(tag - 1), 0, 0, 0, 0);
        if (tag == 2) {
            uint256 wd = _second[id];
            withdrawnA = wd >> 128;
            withdrawnB = wd & MASK128;
        }
        return (1, (w >> 120) & MASK120, w & MASK120, withdrawnA, withdrawnB);
    }

    // ---------------------------------------------------------------- internals

    function _id(Params calldata p) private view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), p));
    }

    function _deposit(Params calldata p, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        if (amount > MAX_DEPOSIT) revert AmountTooLarge();
        bytes32 id = _id(p);
        uint256 w = _channels[id];
        if (w == 0) {
            if (
                p.a == address(0) || p.b == address(0) || p.a == p.b || p.challengePeriod < MIN_CHALLENGE_PERIOD
                    || p.challengePeriod > MAX_CHALLENGE_PERIOD
            ) revert BadParams();
            w = OPEN;
            emit Opened(id, p.a, p.b, p.token, p.challengePeriod, p.salt);
        } else {
            uint256 tag = w & ~MASK248;
            if (tag != OPEN && tag != OPEN_W) revert NotOpen();
        }
        uint256 total;
        if (msg.sender == p.a) {
            total = ((w >> 120) & MASK120) + amount;
            if (total > MASK120) revert AmountTooLarge();
            w = (w & ~(MASK120 << 120)) | (total << 120);
        } else if (msg.sender == p.b) {
            total = (w & MASK120) + amount;
            if (total > MASK120) revert AmountTooLarge();
            w = (w & ~MASK120) | total;
        } else {
            revert NotParty();
        }
        _channels[id] = w;
        emit Deposited(id, msg.sender, amount, total);
    }

    /// Each party's on-chain deposits minus withdrawals; reverts unless the channel is open.
    function _nets(bytes32 id, uint256 w) private view returns (int256 netA, int256 netB) {
        uint256 tag = w & ~MASK248;
        if (tag != OPEN && tag != OPEN_W) revert NotOpen();
        netA = int256((w >> 120) & MASK120);
        netB = int256(w & MASK120);
        if (tag == OPEN_W) {
            uint256 wd = _second[id];
            netA -= int256(wd >> 128);
            netB -= int256(wd & MASK128);
        }
    }

    function _enterClosing(bytes32 id, Record memory r) private {
        _channels[id] = CLOSING | (uint256(keccak256(abi.encode(r.deadline, r.netA, r.netB))) & MASK248);
        _second[id] = _outcome(r.version, r.payA, r.payB, r.locksHash);
        _emitClosing(id, r);
    }

    /// The `_second` word of a closing channel: version and the outcome's hash.
    function _outcome(uint64 version, uint256 payA, uint256 payB, bytes32 lh) private pure returns (uint256) {
        return (uint256(version) << 192) | (uint256(keccak256(abi.encode(payA, payB, lh))) & MASK192);
    }

    function _emitClosing(bytes32 id, Record memory r) private {
        emit Closing(id, r.version, r.deadline, r.netA, r.netB, r.payA, r.payB, r.locksHash);
    }

    /// Reverts unless channel `id` is closing with exactly this deadline and these nets.
    function _checkFrozen(bytes32 id, uint64 deadline, int256 netA, int256 netB) private view {
        uint256 w = _channels[id];
        if (w & ~MASK248 != CLOSING) revert NotClosing();
        if (w != CLOSING | (uint256(keccak256(abi.encode(deadline, netA, netB))) & MASK248)) revert BadRecord();
    }

    /// Checks the state's locks and sums against the on-chain nets; returns what each party
    /// gets before the locks are resolved, and the locks hash.
    function _payouts(Params calldata p, State calldata s, Lock[] calldata locks, int256 netA, int256 netB)
        private
        pure
        returns (uint256 payA, uint256 payB, bytes32 lh)
    {
        uint256 n = locks.length;
        if (n > MAX_LOCKS) revert TooManyLocks();
        uint256 locked;
        for (uint256 i; i < n; ++i) {
            Lock calldata l = locks[i];
            if (l.from != p.a && l.from != p.b) revert BadLock();
            locked += l.amount;
        }
        lh = _hashLocks(locks);
        if (lh != s.locksHash) revert LocksMismatch();
        (payA, payB) = _bases(s, locked, netA, netB);
    }

    function _bases(State calldata s, uint256 locked, int256 netA, int256 netB)
        private
        pure
        returns (uint256 payA, uint256 payB)
    {
        uint256 dA = s.depositA;
        uint256 dB = s.depositB;
        uint256 wA = s.withdrawnA;
        uint256 wB = s.withdrawnB;
        uint256 bA = s.balanceA;
        uint256 bB = s.balanceB;
        if (bA + bB + locked + wA + wB != dA + dB) revert SumMismatch();
        int256 x = int256(bA) + netA - int256(dA) + int256(wA);
        int256 y = int256(bB) + netB - int256(dB) + int256(wB);
        if (x < 0 || y < 0) revert Underfunded();
        return (uint256(x), uint256(y));
    }

    function _hashLocks(Lock[] calldata locks) private pure returns (bytes32) {
        return locks.length == 0 ? bytes32(0) : keccak256(abi.encode(locks));
    }

    /// Checks that both parties signed state `s` of channel `id`.
    function _verify(bytes32 id, Params calldata p, State calldata s, Sig calldata sa, Sig calldata sb)
        private
        view
    {
        if (s.version == 0) revert StaleVersion();
        bytes32 d = _digest(id, s);
        _checkSig(d, sa, p.a);
        _checkSig(d, sb, p.b);
    }

    function _digest(bytes32 id, State calldata s) private view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(STATE_TYPEHASH, id, s));
        return keccak256(abi.encodePacked(hex"1901", _domainSeparator(), structHash));
    }

    function _checkSig(bytes32 digest, Sig calldata sig, address signer) private pure {
        uint8 v = sig.v;
        bytes32 s = sig.s;
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) revert BadSignature();
        address got = ecrecover(digest, v, sig.r, s);
        if (got == address(0) || got != signer) revert BadSignature();
    }

    function _domainSeparator() private view returns (bytes32) {
        return block.chainid == _chainId ? _domain : _buildDomain();
    }

    function _buildDomain() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _sha256(bytes32 preimage) private view returns (bytes32 h) {
        bool ok;
        assembly ("memory-safe") {
            mstore(0, preimage)
            ok := staticcall(gas(), 0x02, 0, 0x20, 0, 0x20)
            h := mload(0)
        }
        if (!ok) revert TransferFailed();
    }

    /// Pays `amount` to `to`, or credits it when the payout fails.
    function _pay(address token, address to, uint256 amount) private {
        if (amount == 0) return;
        if (gasleft() < PAYOUT_GAS_NEEDED) revert InsufficientGas();
        if (!_send(token, to, amount, PAYOUT_GAS)) {
            credit[to][token] += amount;
            emit Credited(to, token, amount);
        }
    }

    /// Sends `amount` of `token` (ETH when zero) to `to` with at most `gasLimit` gas; true on
    /// success. Return data is never copied.
    function _send(address token, address to, uint256 amount, uint256 gasLimit) private returns (bool ok) {
        assembly ("memory-safe") {
            switch token
            case 0 { ok := call(gasLimit, to, amount, 0, 0, 0, 0) }
            default {
                let p := mload(0x40)
                // transfer(address,uint256)
                mstore(p, 0xa9059cbb00000000000000000000000000000000000000000000000000000000)
                mstore(add(p, 0x04), to)
                mstore(add(p, 0x24), amount)
                ok := call(gasLimit, token, 0, p, 0x44, 0, 0x20)
                // Success: no return data from a contract (USDT style), or a returned `true`.
                ok := and(
                    ok,
                    or(
                        and(iszero(returndatasize()), gt(extcodesize(token), 0)),
                        and(gt(returndatasize(), 31), eq(mload(0), 1))
                    )
                )
            }
        }
    }

    /// Pulls exactly `amount` of `token` from `msg.sender`, checking the balance delta.
    function _pull(address token, uint256 amount) private {
        uint256 before = _balance(token);
        bool ok;
        assembly ("memory-safe") {
            let p := mload(0x40)
            // transferFrom(address,address,uint256)
            mstore(p, 0x23b872dd00000000000000000000000000000000000000000000000000000000)
            mstore(add(p, 0x04), caller())
            mstore(add(p, 0x24), address())
            mstore(add(p, 0x44), amount)
            ok := call(gas(), token, 0, p, 0x64, 0, 0x20)
            ok := and(ok, or(iszero(returndatasize()), and(gt(returndatasize(), 31), eq(mload(0), 1))))
        }
        if (!ok) revert TransferFailed();
        uint256 afterBal = _balance(token);
        if (afterBal < before || afterBal - before != amount) revert BalanceMismatch();
    }

    /// This contract's balance of `token`; reverts if `token` does not answer like an ERC-20.
    function _balance(address token) private view returns (uint256 bal) {
        bool ok;
        assembly ("memory-safe") {
            // balanceOf(address)
            mstore(0, 0x70a0823100000000000000000000000000000000000000000000000000000000)
            mstore(0x04, address())
            ok := staticcall(gas(), token, 0, 0x24, 0, 0x20)
            ok := and(ok, gt(returndatasize(), 31))
            bal := mload(0)
        }
        if (!ok) revert TransferFailed();
    }
}
