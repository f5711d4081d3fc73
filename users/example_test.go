package users_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

func ExampleAccounts_Authenticate() {
	dir, err := os.MkdirTemp("", "sessiond-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqliteusers.Open(filepath.Join(dir, "sessiond.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	acc := users.NewAccounts(db, users.DefaultParams)
	if _, err := acc.Add(ctx, "alice", "correct horse battery staple", []string{"admin"}); err != nil {
		log.Fatal(err)
	}

	u, err := acc.Authenticate(ctx, "alice", "correct horse battery staple")
	fmt.Println(u.Username, u.Roles, err)
	_, err = acc.Authenticate(ctx, "alice", "wrong")
	fmt.Println(err)
	_, err = acc.Authenticate(ctx, "mallory", "wrong")
	fmt.Println(err)
	// Output:
	// alice [admin] <nil>
	// users: wrong username or password
	// users: wrong username or password
}
