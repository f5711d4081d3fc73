package directorytest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/users"
)

// RunFactors runs the part of the suite about users.Factors: TOTP
// enrolments, recovery codes, passkeys, summaries, ResetFactors and
// challenges, with their bounds, and the races each promises to settle
// (exactly one winner), from two handles at once. Run runs it too. It uses
// h.New, h.Open, h.Raw and h.TimeResolution only.
func RunFactors(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"TOTP", testTOTP},
		{"TOTPStepConcurrent", testTOTPStepConcurrent},
		{"RecoveryCodes", testRecoveryCodes},
		{"RecoveryCodeConcurrent", testRecoveryCodeConcurrent},
		{"Passkeys", testPasskeys},
		{"PasskeyBounds", testPasskeyBounds},
		{"PasskeyLimitConcurrent", testPasskeyLimitConcurrent},
		{"FactorSummaries", testFactorSummaries},
		{"ResetFactors", testResetFactors},
		{"ResetFactorsConcurrent", testResetFactorsConcurrent},
		{"DeleteUserDeletesFactors", testDeleteUserDeletesFactors},
		{"Challenges", testChallenges},
		{"ChallengeBounds", testChallengeBounds},
		{"TakeChallengeConcurrent", testTakeChallengeConcurrent},
		{"ChallengeIDNotStored", testChallengeIDNotStored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

// newSecret returns a random 20-byte TOTP secret.
func newSecret() []byte {
	b := make([]byte, 20)
	rand.Read(b)
	return b
}

// codeHash returns the SHA-256 hash of a recovery code.
func codeHash(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

// NewPasskey returns a passkey of userID named name with a random
// credential ID and every field set. Its times are whole microseconds,
// which every backend keeps.
func NewPasskey(userID, name string) *users.Passkey {
	id := make([]byte, 32)
	rand.Read(id)
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &users.Passkey{
		CredentialID:    id,
		UserID:          userID,
		Name:            name,
		PublicKey:       []byte("\xa5\x01\x02\x03\x26 public key of " + name),
		AttestationType: "none",
		AAGUID:          bytes.Repeat([]byte{0xad}, 16),
		SignCount:       7,
		Transports:      []string{"internal", "hybrid"},
		UserVerified:    true,
		BackupEligible:  true,
		BackupState:     false,
		CreatedAt:       now,
	}
}

// newChallengeID returns a random challenge ID.
func newChallengeID() string { return rand.Text() }

func testTOTP(t *testing.T, h Harness) {
	b := h.New(t)
	alice, bob := NewUser("alice"), NewUser("bob")
	MustCreate(t, b, alice)
	MustCreate(t, b, bob)

	if _, err := b.TOTP(ctx, alice.ID); err != users.ErrNotFound {
		t.Errorf("TOTP of a user with none: got %v, want users.ErrNotFound", err)
	}
	if err := b.PutTOTP(ctx, &users.TOTP{UserID: "u_nobody", Secret: newSecret()}); err != users.ErrNotFound {
		t.Errorf("PutTOTP of an unknown user: got %v, want users.ErrNotFound", err)
	}
	for name, bad := range map[string]*users.TOTP{
		"no secret":      {UserID: alice.ID},
		"long secret":    {UserID: alice.ID, Secret: make([]byte, users.MaxTOTPSecretLen+1)},
		"no user":        {Secret: newSecret()},
		"negative steps": {UserID: alice.ID, Secret: newSecret(), LastStep: -1},
	} {
		if err := b.PutTOTP(ctx, bad); !errors.Is(err, users.ErrInvalid) {
			t.Errorf("PutTOTP with %s: got %v, want users.ErrInvalid", name, err)
		}
	}

	pending := &users.TOTP{UserID: alice.ID, Secret: newSecret(), CreatedAt: h.truncate(time.Now().UTC())}
	if err := b.PutTOTP(ctx, pending); err != nil {
		t.Fatalf("PutTOTP: %v", err)
	}
	if got, err := b.TOTP(ctx, alice.ID); err != nil || !reflect.DeepEqual(got, pending) {
		t.Errorf("TOTP: got %+v, %v, want %+v", got, err, pending)
	}
	// Replacing a pending enrolment.
	replaced := &users.TOTP{UserID: alice.ID, Secret: newSecret(), CreatedAt: h.truncate(time.Now().UTC())}
	if err := b.PutTOTP(ctx, replaced); err != nil {
		t.Fatalf("PutTOTP again: %v", err)
	}
	b2 := h.Open(t, b)
	if got, err := b2.TOTP(ctx, alice.ID); err != nil || !reflect.DeepEqual(got, replaced) {
		t.Errorf("TOTP after a replacement, second handle: got %+v, %v, want %+v", got, err, replaced)
	}
	if _, err := b.TOTP(ctx, bob.ID); err != users.ErrNotFound {
		t.Errorf("TOTP of bob: got %v, want users.ErrNotFound", err)
	}

	// Steps only go forward; confirm marks the enrolment confirmed, and a
	// later use without it leaves it so.
	steps := []struct {
		step    int64
		confirm bool
		want    error
	}{
		{100, false, nil},
		{100, true, users.ErrReplay},
		{99, true, users.ErrReplay},
		{0, false, users.ErrReplay},
		{101, true, nil},
		{101, false, users.ErrReplay},
		{103, false, nil},
		{102, false, users.ErrReplay},
	}
	for _, s := range steps {
		before, err := b.TOTP(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.UseTOTPStep(ctx, alice.ID, s.step, s.confirm); err != s.want {
			t.Fatalf("UseTOTPStep(%d, %v) after step %d: got %v, want %v", s.step, s.confirm, before.LastStep, err, s.want)
		}
		got, err := b.TOTP(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := *before
		if s.want == nil {
			want.LastStep = s.step
			want.Confirmed = before.Confirmed || s.confirm
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("after UseTOTPStep(%d, %v): got %+v, want %+v", s.step, s.confirm, got, &want)
		}
	}
	if got, _ := b.TOTP(ctx, alice.ID); !got.Confirmed || got.LastStep != 103 || !bytes.Equal(got.Secret, replaced.Secret) {
		t.Errorf("at the end: got %+v, want confirmed at step 103", got)
	}
	if err := b.UseTOTPStep(ctx, bob.ID, 1, true); err != users.ErrNotFound {
		t.Errorf("UseTOTPStep of a user with none: got %v, want users.ErrNotFound", err)
	}

	// Delete.
	if err := b.DeleteTOTP(ctx, bob.ID); err != users.ErrNotFound {
		t.Errorf("DeleteTOTP of a user with none: got %v, want users.ErrNotFound", err)
	}
	if err := b2.DeleteTOTP(ctx, alice.ID); err != nil {
		t.Fatalf("DeleteTOTP: %v", err)
	}
	if _, err := b.TOTP(ctx, alice.ID); err != users.ErrNotFound {
		t.Errorf("TOTP after DeleteTOTP: got %v, want users.ErrNotFound", err)
	}
	if err := b.DeleteTOTP(ctx, alice.ID); err != users.ErrNotFound {
		t.Errorf("DeleteTOTP twice: got %v, want users.ErrNotFound", err)
	}
	// A new enrolment starts from its own LastStep.
	if err := b.PutTOTP(ctx, &users.TOTP{UserID: alice.ID, Secret: newSecret()}); err != nil {
		t.Fatal(err)
	}
	if err := b.UseTOTPStep(ctx, alice.ID, 50, true); err != nil {
		t.Errorf("UseTOTPStep on a new enrolment: %v", err)
	}
}

// oneWinner runs each of fns at once and checks that exactly one returns
// nil and every other returns want.
func oneWinner(t *testing.T, what string, want error, fns []func() error) {
	t.Helper()
	errs := make([]error, len(fns))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			<-start
			errs[i] = fn()
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case err != want:
			t.Fatalf("%s: call %d: got %v, want nil or %v", what, i, err, want)
		}
	}
	if wins != 1 {
		t.Fatalf("%s: %d calls succeeded, want exactly 1 (errors %v)", what, wins, errs)
	}
}

// racers is how many calls race in each round of the concurrency tests,
// and rounds how many rounds they run.
const racers, rounds = 4, 20

func testTOTPStepConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	handles := []Backend{a, h.Open(t, a)}
	u := NewUser("alice")
	MustCreate(t, a, u)
	if err := a.PutTOTP(ctx, &users.TOTP{UserID: u.ID, Secret: newSecret()}); err != nil {
		t.Fatal(err)
	}
	for round := range rounds {
		step := int64(1000 + round)
		var fns []func() error
		for i := range racers {
			d := handles[i%len(handles)]
			fns = append(fns, func() error { return d.UseTOTPStep(ctx, u.ID, step, i == 0) })
		}
		oneWinner(t, fmt.Sprintf("round %d: UseTOTPStep(%d)", round, step), users.ErrReplay, fns)
		if got, err := a.TOTP(ctx, u.ID); err != nil || got.LastStep != step {
			t.Fatalf("round %d: got %+v, %v, want LastStep %d", round, got, err, step)
		}
	}
}

func testRecoveryCodes(t *testing.T, h Harness) {
	b := h.New(t)
	alice, bob := NewUser("alice"), NewUser("bob")
	MustCreate(t, b, alice)
	MustCreate(t, b, bob)
	left := func(id string) int {
		t.Helper()
		n, err := b.RecoveryCodesLeft(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := left(alice.ID); n != 0 {
		t.Errorf("RecoveryCodesLeft of a user with none: got %d, want 0", n)
	}
	if err := b.SetRecoveryCodes(ctx, "u_nobody", [][]byte{codeHash("x")}); err != users.ErrNotFound {
		t.Errorf("SetRecoveryCodes of an unknown user: got %v, want users.ErrNotFound", err)
	}
	var first [][]byte
	for i := range 10 {
		first = append(first, codeHash(fmt.Sprintf("first-%d", i)))
	}
	if err := b.SetRecoveryCodes(ctx, alice.ID, first); err != nil {
		t.Fatalf("SetRecoveryCodes: %v", err)
	}
	if err := b.SetRecoveryCodes(ctx, bob.ID, [][]byte{codeHash("bob's")}); err != nil {
		t.Fatal(err)
	}
	if n := left(alice.ID); n != 10 {
		t.Errorf("RecoveryCodesLeft: got %d, want 10", n)
	}
	// Each code once, and only for its owner.
	if err := b.UseRecoveryCode(ctx, alice.ID, first[3]); err != nil {
		t.Errorf("UseRecoveryCode: %v", err)
	}
	if err := b.UseRecoveryCode(ctx, alice.ID, first[3]); err != users.ErrNotFound {
		t.Errorf("UseRecoveryCode twice: got %v, want users.ErrNotFound", err)
	}
	if err := b.UseRecoveryCode(ctx, alice.ID, codeHash("bob's")); err != users.ErrNotFound {
		t.Errorf("UseRecoveryCode of another user's code: got %v, want users.ErrNotFound", err)
	}
	if err := b.UseRecoveryCode(ctx, bob.ID, first[4]); err != users.ErrNotFound {
		t.Errorf("UseRecoveryCode by bob of alice's code: got %v, want users.ErrNotFound", err)
	}
	if err := b.UseRecoveryCode(ctx, alice.ID, codeHash("never issued")); err != users.ErrNotFound {
		t.Errorf("UseRecoveryCode of an unknown code: got %v, want users.ErrNotFound", err)
	}
	if err := b.UseRecoveryCode(ctx, alice.ID, nil); err != users.ErrNotFound {
		t.Errorf("UseRecoveryCode of an empty hash: got %v, want users.ErrNotFound", err)
	}
	if n := left(alice.ID); n != 9 {
		t.Errorf("RecoveryCodesLeft after one use: got %d, want 9", n)
	}
	// A new set voids the old one.
	second := [][]byte{codeHash("second-0"), codeHash("second-1")}
	if err := h.Open(t, b).SetRecoveryCodes(ctx, alice.ID, second); err != nil {
		t.Fatal(err)
	}
	if err := b.UseRecoveryCode(ctx, alice.ID, first[0]); err != users.ErrNotFound {
		t.Errorf("UseRecoveryCode of a code of a replaced set: got %v, want users.ErrNotFound", err)
	}
	if n := left(alice.ID); n != 2 {
		t.Errorf("RecoveryCodesLeft after a new set: got %d, want 2", n)
	}
	if err := b.UseRecoveryCode(ctx, alice.ID, second[1]); err != nil {
		t.Errorf("UseRecoveryCode of the new set: %v", err)
	}
	if n := left(bob.ID); n != 1 {
		t.Errorf("bob's codes after alice's changes: got %d, want 1", n)
	}

	// Bounds.
	tooMany := make([][]byte, users.MaxRecoveryCodes+1)
	for i := range tooMany {
		tooMany[i] = codeHash(fmt.Sprint(i))
	}
	for name, hashes := range map[string][][]byte{
		"too many codes": tooMany,
		"an empty hash":  {codeHash("a"), {}},
		"a long hash":    {make([]byte, users.MaxRecoveryCodeHashLen+1)},
	} {
		if err := b.SetRecoveryCodes(ctx, alice.ID, hashes); !errors.Is(err, users.ErrInvalid) {
			t.Errorf("SetRecoveryCodes with %s: got %v, want users.ErrInvalid", name, err)
		}
	}
	if n := left(alice.ID); n != 1 {
		t.Errorf("RecoveryCodesLeft after refused sets: got %d, want 1", n)
	}
	if err := b.SetRecoveryCodes(ctx, alice.ID, tooMany[:users.MaxRecoveryCodes]); err != nil {
		t.Errorf("SetRecoveryCodes of %d codes: %v", users.MaxRecoveryCodes, err)
	}
	// An empty set removes them all.
	if err := b.SetRecoveryCodes(ctx, alice.ID, nil); err != nil {
		t.Fatal(err)
	}
	if n := left(alice.ID); n != 0 {
		t.Errorf("RecoveryCodesLeft after an empty set: got %d, want 0", n)
	}
}

func testRecoveryCodeConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	handles := []Backend{a, h.Open(t, a)}
	u := NewUser("alice")
	MustCreate(t, a, u)
	var hashes [][]byte
	for i := range rounds {
		hashes = append(hashes, codeHash(fmt.Sprintf("code-%d", i)))
	}
	if err := a.SetRecoveryCodes(ctx, u.ID, hashes); err != nil {
		t.Fatal(err)
	}
	for round, hash := range hashes {
		var fns []func() error
		for i := range racers {
			d := handles[i%len(handles)]
			fns = append(fns, func() error { return d.UseRecoveryCode(ctx, u.ID, hash) })
		}
		oneWinner(t, fmt.Sprintf("round %d: UseRecoveryCode", round), users.ErrNotFound, fns)
		if n, err := a.RecoveryCodesLeft(ctx, u.ID); err != nil || n != rounds-round-1 {
			t.Fatalf("round %d: RecoveryCodesLeft: got %d, %v, want %d", round, n, err, rounds-round-1)
		}
	}
}

// mustPasskeys returns userID's passkeys and fails the test on an error.
func mustPasskeys(t *testing.T, f users.Factors, userID string) []*users.Passkey {
	t.Helper()
	list, err := f.Passkeys(ctx, userID)
	if err != nil {
		t.Fatalf("Passkeys: %v", err)
	}
	return list
}

func testPasskeys(t *testing.T, h Harness) {
	b := h.New(t)
	alice, bob := NewUser("alice"), NewUser("bob")
	MustCreate(t, b, alice)
	MustCreate(t, b, bob)
	if list := mustPasskeys(t, b, alice.ID); len(list) != 0 {
		t.Errorf("Passkeys of a user with none: got %v", list)
	}
	if err := b.AddPasskey(ctx, NewPasskey("u_nobody", "x")); err != users.ErrNotFound {
		t.Errorf("AddPasskey of an unknown user: got %v, want users.ErrNotFound", err)
	}

	// Oldest first: by CreatedAt, then in the order added.
	p1 := NewPasskey(alice.ID, "laptop")
	p2 := NewPasskey(alice.ID, "phone")
	p2.CreatedAt = p1.CreatedAt.Add(-time.Hour)
	p3 := NewPasskey(alice.ID, "key")
	p3.CreatedAt = p1.CreatedAt
	// The fields a backend must keep empty.
	p3.AAGUID, p3.Transports, p3.UserVerified, p3.BackupEligible, p3.SignCount, p3.AttestationType = nil, nil, false, false, 0, ""
	for _, p := range []*users.Passkey{p1, p2, p3} {
		if err := b.AddPasskey(ctx, p); err != nil {
			t.Fatalf("AddPasskey(%q): %v", p.Name, err)
		}
	}
	bobs := NewPasskey(bob.ID, "bob's")
	if err := b.AddPasskey(ctx, bobs); err != nil {
		t.Fatal(err)
	}
	b2 := h.Open(t, b)
	if got, want := mustPasskeys(t, b2, alice.ID), []*users.Passkey{p2, p1, p3}; !reflect.DeepEqual(got, want) {
		t.Errorf("Passkeys: got %+v, want %+v", got, want)
	}
	for _, p := range []*users.Passkey{p1, p3, bobs} {
		if got, err := b2.PasskeyByID(ctx, p.CredentialID); err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("PasskeyByID(%q): got %+v, %v, want %+v", p.Name, got, err, p)
		}
	}
	for name, id := range map[string][]byte{
		"unknown": []byte("no such credential"), "empty": nil, "long": make([]byte, users.MaxCredentialIDLen+1),
	} {
		if _, err := b.PasskeyByID(ctx, id); err != users.ErrNotFound {
			t.Errorf("PasskeyByID(%s): got %v, want users.ErrNotFound", name, err)
		}
	}

	// A credential ID is stored once, whoever adds it.
	dup := NewPasskey(bob.ID, "copy")
	dup.CredentialID = p1.CredentialID
	if err := b.AddPasskey(ctx, dup); err != users.ErrExists {
		t.Errorf("AddPasskey with a stored credential ID: got %v, want users.ErrExists", err)
	}
	if got, _ := b.PasskeyByID(ctx, p1.CredentialID); got == nil || got.UserID != alice.ID || got.Name != "laptop" {
		t.Errorf("after a refused duplicate: got %+v, want alice's laptop", got)
	}

	// UsePasskey.
	at := h.truncate(time.Now().UTC().Add(time.Minute))
	if err := b.UsePasskey(ctx, p1.CredentialID, 4_000_000_000, true, at); err != nil {
		t.Fatalf("UsePasskey: %v", err)
	}
	want := *p1
	want.SignCount, want.BackupState, want.LastUsedAt = 4_000_000_000, true, at
	if got, err := b2.PasskeyByID(ctx, p1.CredentialID); err != nil || !reflect.DeepEqual(got, &want) {
		t.Errorf("after UsePasskey: got %+v, %v, want %+v", got, err, &want)
	}
	if err := b.UsePasskey(ctx, []byte("no such credential"), 1, false, at); err != users.ErrNotFound {
		t.Errorf("UsePasskey of an unknown credential: got %v, want users.ErrNotFound", err)
	}

	// RenamePasskey: only the owner's, within bounds.
	if err := b.RenamePasskey(ctx, alice.ID, p1.CredentialID, "work laptop"); err != nil {
		t.Errorf("RenamePasskey: %v", err)
	}
	if err := b.RenamePasskey(ctx, bob.ID, p1.CredentialID, "stolen"); err != users.ErrNotFound {
		t.Errorf("RenamePasskey of another user's passkey: got %v, want users.ErrNotFound", err)
	}
	if err := b.RenamePasskey(ctx, alice.ID, p1.CredentialID, strings.Repeat("é", users.MaxPasskeyNameLen+1)); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("RenamePasskey to a long name: got %v, want users.ErrInvalid", err)
	}
	if err := b.RenamePasskey(ctx, alice.ID, p1.CredentialID, "\xff"); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("RenamePasskey to invalid UTF-8: got %v, want users.ErrInvalid", err)
	}
	if got, _ := b.PasskeyByID(ctx, p1.CredentialID); got == nil || got.Name != "work laptop" {
		t.Errorf("after RenamePasskey: got %+v, want the name %q", got, "work laptop")
	}
	long := strings.Repeat("é", users.MaxPasskeyNameLen)
	if err := b.RenamePasskey(ctx, alice.ID, p1.CredentialID, long); err != nil {
		t.Errorf("RenamePasskey to %d characters: %v", users.MaxPasskeyNameLen, err)
	}
	if err := b.RenamePasskey(ctx, alice.ID, []byte("no such credential"), "x"); err != users.ErrNotFound {
		t.Errorf("RenamePasskey of an unknown credential: got %v, want users.ErrNotFound", err)
	}

	// DeletePasskey: only the owner's.
	if err := b.DeletePasskey(ctx, bob.ID, p1.CredentialID); err != users.ErrNotFound {
		t.Errorf("DeletePasskey of another user's passkey: got %v, want users.ErrNotFound", err)
	}
	if err := b.DeletePasskey(ctx, alice.ID, p1.CredentialID); err != nil {
		t.Errorf("DeletePasskey: %v", err)
	}
	if err := b.DeletePasskey(ctx, alice.ID, p1.CredentialID); err != users.ErrNotFound {
		t.Errorf("DeletePasskey twice: got %v, want users.ErrNotFound", err)
	}
	if _, err := b.PasskeyByID(ctx, p1.CredentialID); err != users.ErrNotFound {
		t.Errorf("PasskeyByID after DeletePasskey: got %v, want users.ErrNotFound", err)
	}
	if got := mustPasskeys(t, b, alice.ID); len(got) != 2 {
		t.Errorf("Passkeys after DeletePasskey: got %d, want 2", len(got))
	}
	// The credential ID is free again.
	again := NewPasskey(bob.ID, "again")
	again.CredentialID = p1.CredentialID
	if err := b.AddPasskey(ctx, again); err != nil {
		t.Errorf("AddPasskey of a deleted credential ID: %v", err)
	}
}

func testPasskeyBounds(t *testing.T, h Harness) {
	b := h.New(t)
	u := NewUser("alice")
	MustCreate(t, b, u)
	edit := func(f func(p *users.Passkey)) *users.Passkey {
		p := NewPasskey(u.ID, "k")
		f(p)
		return p
	}
	for name, p := range map[string]*users.Passkey{
		"no credential ID":   edit(func(p *users.Passkey) { p.CredentialID = nil }),
		"long credential ID": edit(func(p *users.Passkey) { p.CredentialID = make([]byte, users.MaxCredentialIDLen+1) }),
		"long name":          edit(func(p *users.Passkey) { p.Name = strings.Repeat("x", users.MaxPasskeyNameLen+1) }),
		"no public key":      edit(func(p *users.Passkey) { p.PublicKey = nil }),
		"long public key":    edit(func(p *users.Passkey) { p.PublicKey = make([]byte, users.MaxPublicKeyLen+1) }),
		"long AAGUID":        edit(func(p *users.Passkey) { p.AAGUID = make([]byte, 17) }),
		"many transports":    edit(func(p *users.Passkey) { p.Transports = make([]string, users.MaxTransports+1) }),
		"empty transport":    edit(func(p *users.Passkey) { p.Transports = []string{""} }),
		"long transport":     edit(func(p *users.Passkey) { p.Transports = []string{strings.Repeat("x", 33)} }),
		"long attestation":   edit(func(p *users.Passkey) { p.AttestationType = strings.Repeat("x", 33) }),
		"no user":            edit(func(p *users.Passkey) { p.UserID = "" }),
	} {
		if err := b.AddPasskey(ctx, p); !errors.Is(err, users.ErrInvalid) {
			t.Errorf("AddPasskey with %s: got %v, want users.ErrInvalid", name, err)
		}
	}
	if got := mustPasskeys(t, b, u.ID); len(got) != 0 {
		t.Fatalf("after refused adds: got %d passkeys, want 0", len(got))
	}
	// The largest credential ID and the longest name fit.
	max := edit(func(p *users.Passkey) {
		p.CredentialID = bytes.Repeat([]byte{0xff}, users.MaxCredentialIDLen)
		p.Name = strings.Repeat("ü", users.MaxPasskeyNameLen)
	})
	if err := b.AddPasskey(ctx, max); err != nil {
		t.Fatalf("AddPasskey at the bounds: %v", err)
	}
	if got, err := b.PasskeyByID(ctx, max.CredentialID); err != nil || !reflect.DeepEqual(got, max) {
		t.Errorf("PasskeyByID at the bounds: got %+v, %v", got, err)
	}
	// MaxPasskeys per user.
	for i := 1; i < users.MaxPasskeys; i++ {
		if err := b.AddPasskey(ctx, NewPasskey(u.ID, fmt.Sprint(i))); err != nil {
			t.Fatalf("AddPasskey %d: %v", i+1, err)
		}
	}
	if err := b.AddPasskey(ctx, NewPasskey(u.ID, "one too many")); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("AddPasskey past MaxPasskeys: got %v, want users.ErrInvalid", err)
	}
	if got := mustPasskeys(t, b, u.ID); len(got) != users.MaxPasskeys {
		t.Errorf("Passkeys: got %d, want %d", len(got), users.MaxPasskeys)
	}
	// Deleting one makes room.
	if err := b.DeletePasskey(ctx, u.ID, max.CredentialID); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPasskey(ctx, NewPasskey(u.ID, "room again")); err != nil {
		t.Errorf("AddPasskey after a delete: %v", err)
	}
}

// testPasskeyLimitConcurrent races adds of the last passkeys a user may
// have: they never pass MaxPasskeys.
func testPasskeyLimitConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	handles := []Backend{a, h.Open(t, a)}
	for round := range 5 {
		u := NewUser(fmt.Sprintf("user%d", round))
		MustCreate(t, a, u)
		for i := 1; i < users.MaxPasskeys; i++ {
			if err := a.AddPasskey(ctx, NewPasskey(u.ID, fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		var fns []func() error
		for i := range racers {
			d := handles[i%len(handles)]
			p := NewPasskey(u.ID, fmt.Sprintf("racer %d", i))
			fns = append(fns, func() error {
				if err := d.AddPasskey(ctx, p); errors.Is(err, users.ErrInvalid) {
					return users.ErrInvalid
				} else {
					return err
				}
			})
		}
		oneWinner(t, fmt.Sprintf("round %d: AddPasskey of the last one", round), users.ErrInvalid, fns)
		if got := mustPasskeys(t, a, u.ID); len(got) != users.MaxPasskeys {
			t.Fatalf("round %d: got %d passkeys, want %d", round, len(got), users.MaxPasskeys)
		}
	}
}

func testFactorSummaries(t *testing.T, h Harness) {
	b := h.New(t)
	alice, bob, carol := NewUser("alice"), NewUser("bob"), NewUser("carol")
	for _, u := range []*users.User{alice, bob, carol} {
		MustCreate(t, b, u)
	}
	// alice: confirmed TOTP, 2 passkeys, 3 codes; bob: a pending TOTP,
	// which does not count; carol: nothing.
	if err := b.PutTOTP(ctx, &users.TOTP{UserID: alice.ID, Secret: newSecret(), Confirmed: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutTOTP(ctx, &users.TOTP{UserID: bob.ID, Secret: newSecret()}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := b.AddPasskey(ctx, NewPasskey(alice.ID, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetRecoveryCodes(ctx, alice.ID, [][]byte{codeHash("1"), codeHash("2"), codeHash("3")}); err != nil {
		t.Fatal(err)
	}
	got, err := b.FactorSummaries(ctx, []string{alice.ID, bob.ID, carol.ID, "u_nobody", alice.ID})
	if err != nil {
		t.Fatalf("FactorSummaries: %v", err)
	}
	want := map[string]users.FactorSummary{
		alice.ID:   {TOTP: true, Passkeys: 2, RecoveryCodes: 3},
		bob.ID:     {},
		carol.ID:   {},
		"u_nobody": {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FactorSummaries: got %+v, want %+v", got, want)
	}
	// Confirming bob's counts.
	if err := b.UseTOTPStep(ctx, bob.ID, 1, true); err != nil {
		t.Fatal(err)
	}
	if got, err := b.FactorSummaries(ctx, []string{bob.ID}); err != nil || !reflect.DeepEqual(got, map[string]users.FactorSummary{bob.ID: {TOTP: true}}) {
		t.Errorf("FactorSummaries after a confirmation: got %+v, %v", got, err)
	}
	if got, err := b.FactorSummaries(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("FactorSummaries(nil): got %+v, %v, want an empty map", got, err)
	}
}

// giveFactors gives u a confirmed TOTP, two recovery codes and a passkey.
func giveFactors(t *testing.T, f users.Factors, u *users.User) *users.Passkey {
	t.Helper()
	if err := f.PutTOTP(ctx, &users.TOTP{UserID: u.ID, Secret: newSecret(), Confirmed: true, LastStep: 5}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetRecoveryCodes(ctx, u.ID, [][]byte{codeHash(u.ID + "1"), codeHash(u.ID + "2")}); err != nil {
		t.Fatal(err)
	}
	p := NewPasskey(u.ID, "key")
	if err := f.AddPasskey(ctx, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkNoFactors checks that userID has no factors left, and that the
// passkey p is gone.
func checkNoFactors(t *testing.T, f users.Factors, userID string, p *users.Passkey) {
	t.Helper()
	if _, err := f.TOTP(ctx, userID); err != users.ErrNotFound {
		t.Errorf("TOTP: got %v, want users.ErrNotFound", err)
	}
	if n, err := f.RecoveryCodesLeft(ctx, userID); err != nil || n != 0 {
		t.Errorf("RecoveryCodesLeft: got %d, %v, want 0", n, err)
	}
	if list := mustPasskeys(t, f, userID); len(list) != 0 {
		t.Errorf("Passkeys: got %d, want 0", len(list))
	}
	if _, err := f.PasskeyByID(ctx, p.CredentialID); err != users.ErrNotFound {
		t.Errorf("PasskeyByID: got %v, want users.ErrNotFound", err)
	}
}

func testResetFactors(t *testing.T, h Harness) {
	b := h.New(t)
	alice, bob := NewUser("alice"), NewUser("bob")
	MustCreate(t, b, alice)
	MustCreate(t, b, bob)
	pa := giveFactors(t, b, alice)
	giveFactors(t, b, bob)

	if err := b.ResetFactors(ctx, NewUser("nobody")); err != users.ErrNotFound {
		t.Errorf("ResetFactors of an unknown user: got %v, want users.ErrNotFound", err)
	}
	// From a stale version: nothing changes.
	stale := clone(alice)
	alice.PasswordHash = "h2"
	if err := b.Update(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := b.ResetFactors(ctx, stale); err != users.ErrConflict {
		t.Errorf("ResetFactors from a stale version: got %v, want users.ErrConflict", err)
	}
	if stale.Version != 1 {
		t.Errorf("Version after a refused reset: got %d, want 1", stale.Version)
	}
	if s, _ := b.FactorSummaries(ctx, []string{alice.ID}); s[alice.ID] != (users.FactorSummary{TOTP: true, Passkeys: 1, RecoveryCodes: 2}) {
		t.Errorf("after a refused reset: got %+v, want every factor kept", s[alice.ID])
	}

	if err := h.Open(t, b).ResetFactors(ctx, alice); err != nil {
		t.Fatalf("ResetFactors: %v", err)
	}
	if alice.Version != 3 {
		t.Errorf("Version in u after ResetFactors: got %d, want 3", alice.Version)
	}
	if got := mustByID(t, b, alice.ID); !reflect.DeepEqual(got, alice) {
		t.Errorf("stored user after ResetFactors: got %+v, want %+v", got, alice)
	}
	checkNoFactors(t, b, alice.ID, pa)
	// bob keeps his.
	if s, _ := b.FactorSummaries(ctx, []string{bob.ID}); s[bob.ID] != (users.FactorSummary{TOTP: true, Passkeys: 1, RecoveryCodes: 2}) {
		t.Errorf("bob after alice's reset: got %+v", s[bob.ID])
	}
	// An Update from the version before the reset is refused.
	alice2 := clone(alice)
	alice2.Version = 2
	if err := b.Update(ctx, alice2); err != users.ErrConflict {
		t.Errorf("Update from before the reset: got %v, want users.ErrConflict", err)
	}
}

// testResetFactorsConcurrent races resets and Updates from one version:
// one wins.
func testResetFactorsConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	handles := []Backend{a, h.Open(t, a)}
	u := NewUser("alice")
	MustCreate(t, a, u)
	for round := range 10 {
		giveFactors(t, a, u)
		base := mustByID(t, a, u.ID)
		var fns []func() error
		for i := range racers {
			d := handles[i%len(handles)]
			c := clone(base)
			if i%2 == 0 {
				fns = append(fns, func() error { return d.ResetFactors(ctx, c) })
			} else {
				fns = append(fns, func() error { return d.Update(ctx, c) })
			}
		}
		oneWinner(t, fmt.Sprintf("round %d: ResetFactors and Update", round), users.ErrConflict, fns)
		if got := mustByID(t, a, u.ID); got.Version != base.Version+1 {
			t.Fatalf("round %d: Version %d, want %d", round, got.Version, base.Version+1)
		}
		// Clear what a lost reset left, for the next round.
		if err := a.ResetFactors(ctx, mustByID(t, a, u.ID)); err != nil {
			t.Fatal(err)
		}
		u = mustByID(t, a, u.ID)
	}
}

func testDeleteUserDeletesFactors(t *testing.T, h Harness) {
	b := h.New(t)
	alice, bob := NewUser("alice"), NewUser("bob")
	MustCreate(t, b, alice)
	MustCreate(t, b, bob)
	pa := giveFactors(t, b, alice)
	giveFactors(t, b, bob)
	if err := b.Delete(ctx, alice); err != nil {
		t.Fatal(err)
	}
	checkNoFactors(t, b, alice.ID, pa)
	// A user created again with the ID finds nothing of the old one's.
	again := NewUser("alice")
	again.ID = alice.ID
	MustCreate(t, b, again)
	checkNoFactors(t, b, alice.ID, pa)
	if err := b.UseRecoveryCode(ctx, alice.ID, codeHash(alice.ID+"1")); err != users.ErrNotFound {
		t.Errorf("UseRecoveryCode of a deleted user's code: got %v, want users.ErrNotFound", err)
	}
	if s, _ := b.FactorSummaries(ctx, []string{bob.ID}); s[bob.ID] != (users.FactorSummary{TOTP: true, Passkeys: 1, RecoveryCodes: 2}) {
		t.Errorf("bob after alice's deletion: got %+v", s[bob.ID])
	}
}

func testChallenges(t *testing.T, h Harness) {
	b := h.New(t)
	exp := h.truncate(time.Now().UTC().Add(time.Minute))
	c := &users.Challenge{ID: newChallengeID(), Kind: "second-factor", UserID: "u_alice", Data: []byte(`{"n":1}`), ExpiresAt: exp}
	if err := b.PutChallenge(ctx, c); err != nil {
		t.Fatalf("PutChallenge: %v", err)
	}
	if err := b.PutChallenge(ctx, &users.Challenge{ID: c.ID, Kind: "passkey-login", ExpiresAt: exp}); err != users.ErrExists {
		t.Errorf("PutChallenge with a taken ID: got %v, want users.ErrExists", err)
	}
	b2 := h.Open(t, b)
	if got, err := b2.Challenge(ctx, c.ID, c.Kind); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("Challenge: got %+v, %v, want %+v", got, err, c)
	}
	// Reading does not take it; another kind, or an unknown ID, finds nothing.
	for name, args := range map[string][2]string{
		"another kind": {c.ID, "passkey-login"},
		"unknown ID":   {newChallengeID(), c.Kind},
		"empty ID":     {"", c.Kind},
	} {
		if _, err := b.Challenge(ctx, args[0], args[1]); err != users.ErrNotFound {
			t.Errorf("Challenge with %s: got %v, want users.ErrNotFound", name, err)
		}
		if _, err := b.TakeChallenge(ctx, args[0], args[1]); err != users.ErrNotFound {
			t.Errorf("TakeChallenge with %s: got %v, want users.ErrNotFound", name, err)
		}
	}
	if got, err := b2.TakeChallenge(ctx, c.ID, c.Kind); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("TakeChallenge: got %+v, %v, want %+v", got, err, c)
	}
	if _, err := b.TakeChallenge(ctx, c.ID, c.Kind); err != users.ErrNotFound {
		t.Errorf("TakeChallenge twice: got %v, want users.ErrNotFound", err)
	}
	if _, err := b.Challenge(ctx, c.ID, c.Kind); err != users.ErrNotFound {
		t.Errorf("Challenge after TakeChallenge: got %v, want users.ErrNotFound", err)
	}

	// No user and no data read back empty.
	bare := &users.Challenge{ID: newChallengeID(), Kind: "passkey-login", ExpiresAt: exp}
	if err := b.PutChallenge(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if got, err := b.TakeChallenge(ctx, bare.ID, bare.Kind); err != nil || !reflect.DeepEqual(got, bare) {
		t.Errorf("TakeChallenge of a bare challenge: got %+v, %v, want %+v", got, err, bare)
	}

	// An expired challenge is found by neither, and its ID may be used
	// again.
	old := &users.Challenge{ID: newChallengeID(), Kind: "second-factor", ExpiresAt: time.Now().Add(-time.Second)}
	if err := b.PutChallenge(ctx, old); err != nil {
		t.Fatalf("PutChallenge of an expired challenge: %v", err)
	}
	if _, err := b.Challenge(ctx, old.ID, old.Kind); err != users.ErrNotFound {
		t.Errorf("Challenge of an expired one: got %v, want users.ErrNotFound", err)
	}
	if _, err := b.TakeChallenge(ctx, old.ID, old.Kind); err != users.ErrNotFound {
		t.Errorf("TakeChallenge of an expired one: got %v, want users.ErrNotFound", err)
	}
	renewed := &users.Challenge{ID: old.ID, Kind: "passkey-register", UserID: "u_bob", ExpiresAt: exp}
	if err := b.PutChallenge(ctx, renewed); err != nil {
		t.Errorf("PutChallenge over an expired one: %v", err)
	}
	if got, err := b.Challenge(ctx, old.ID, "passkey-register"); err != nil || !reflect.DeepEqual(got, renewed) {
		t.Errorf("Challenge after a renewal: got %+v, %v, want %+v", got, err, renewed)
	}
	// One that expires while stored.
	soon := &users.Challenge{ID: newChallengeID(), Kind: "second-factor", ExpiresAt: time.Now().Add(300 * time.Millisecond)}
	if err := b.PutChallenge(ctx, soon); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Challenge(ctx, soon.ID, soon.Kind); err != nil {
		t.Errorf("Challenge before it expires: %v", err)
	}
	time.Sleep(time.Until(soon.ExpiresAt) + 10*time.Millisecond)
	if _, err := b.TakeChallenge(ctx, soon.ID, soon.Kind); err != users.ErrNotFound {
		t.Errorf("TakeChallenge after it expired: got %v, want users.ErrNotFound", err)
	}

	// Many expired challenges are swept while new ones are put, and the
	// live ones stay.
	for range 3 * 64 {
		if err := b.PutChallenge(ctx, &users.Challenge{ID: newChallengeID(), Kind: "x", ExpiresAt: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := b.Challenge(ctx, renewed.ID, renewed.Kind); err != nil || !reflect.DeepEqual(got, renewed) {
		t.Errorf("a live challenge after sweeps: got %+v, %v", got, err)
	}
}

func testChallengeBounds(t *testing.T, h Harness) {
	b := h.New(t)
	exp := time.Now().Add(time.Minute)
	ok := func() *users.Challenge {
		return &users.Challenge{ID: newChallengeID(), Kind: "k", ExpiresAt: exp}
	}
	edit := func(f func(c *users.Challenge)) *users.Challenge {
		c := ok()
		f(c)
		return c
	}
	for name, c := range map[string]*users.Challenge{
		"data past 8 KiB": edit(func(c *users.Challenge) { c.Data = make([]byte, users.MaxChallengeData+1) }),
		"short ID":        edit(func(c *users.Challenge) { c.ID = "short" }),
		"long ID":         edit(func(c *users.Challenge) { c.ID = strings.Repeat("x", 257) }),
		"no kind":         edit(func(c *users.Challenge) { c.Kind = "" }),
		"long kind":       edit(func(c *users.Challenge) { c.Kind = strings.Repeat("k", 65) }),
		"long user ID":    edit(func(c *users.Challenge) { c.UserID = strings.Repeat("u", 65) }),
		"no expiry":       edit(func(c *users.Challenge) { c.ExpiresAt = time.Time{} }),
	} {
		if err := b.PutChallenge(ctx, c); !errors.Is(err, users.ErrInvalid) {
			t.Errorf("PutChallenge with %s: got %v, want users.ErrInvalid", name, err)
		}
		if _, err := b.Challenge(ctx, c.ID, c.Kind); err != users.ErrNotFound {
			t.Errorf("Challenge after a refused put with %s: got %v, want users.ErrNotFound", name, err)
		}
	}
	full := edit(func(c *users.Challenge) {
		c.Data = make([]byte, users.MaxChallengeData)
		rand.Read(c.Data)
	})
	if err := b.PutChallenge(ctx, full); err != nil {
		t.Fatalf("PutChallenge of 8 KiB: %v", err)
	}
	if got, err := b.TakeChallenge(ctx, full.ID, full.Kind); err != nil || !bytes.Equal(got.Data, full.Data) {
		t.Errorf("TakeChallenge of 8 KiB: got %v, want the data back", err)
	}
}

func testTakeChallengeConcurrent(t *testing.T, h Harness) {
	a := h.New(t)
	handles := []Backend{a, h.Open(t, a)}
	for round := range rounds {
		c := &users.Challenge{ID: newChallengeID(), Kind: "second-factor", UserID: "u_a", ExpiresAt: time.Now().Add(time.Minute)}
		if err := a.PutChallenge(ctx, c); err != nil {
			t.Fatal(err)
		}
		var fns []func() error
		for i := range racers {
			d := handles[i%len(handles)]
			fns = append(fns, func() error { return second(d.TakeChallenge(ctx, c.ID, c.Kind)) })
		}
		oneWinner(t, fmt.Sprintf("round %d: TakeChallenge", round), users.ErrNotFound, fns)
	}
}

// testChallengeIDNotStored checks that the storage keeps no challenge ID
// as it is, only its hash.
func testChallengeIDNotStored(t *testing.T, h Harness) {
	b := h.New(t)
	id := "challenge-" + rand.Text()
	if err := b.PutChallenge(ctx, &users.Challenge{ID: id, Kind: "second-factor", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Challenge(ctx, id, "second-factor"); err != nil {
		t.Fatal(err)
	}
	raw := h.Raw(t, b)
	if !bytes.Contains(raw, []byte("second-factor")) {
		t.Fatal("the storage's raw contents do not hold the challenge's kind: is Raw reading the right storage?")
	}
	if bytes.Contains(raw, []byte(id)) {
		t.Error("the storage holds a challenge ID as it is")
	}
}
