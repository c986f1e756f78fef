// oidc-provider is a small OpenID Connect provider for local tests: the
// zitadel/oidc example OP (login page + in-memory storage) with clients and
// users read from a JSON file, plus name/groups claims in the ID token.
//
//	oidc-provider --listen 127.0.0.1:5556 --config oidc.json [--issuer http://127.0.0.1:5556]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const groupsScope = "groups"

type config struct {
	Clients []struct {
		ID           string   `json:"id"`
		Secret       string   `json:"secret"`
		RedirectURIs []string `json:"redirect_uris"`
	} `json:"clients"`
	Users []user `json:"users"`
}

type user struct {
	Username      string   `json:"username"` // also the `sub` claim
	Password      string   `json:"password"`
	Email         string   `json:"email"`
	EmailVerified *bool    `json:"email_verified"` // optional, default true
	Name          string   `json:"name"`
	Groups        []string `json:"groups"`
}

// userStore implements storage.UserStore over the users of the config file.
type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User         { return u[id] }
func (u userStore) GetUserByUsername(name string) *storage.User { return u[name] }
func (u userStore) ExampleClientID() string                     { return "" } // no JWT-profile service accounts

// store embeds the example storage and adds only what it lacks: the full
// `name`, the `groups` claim, and clients that put profile/email claims in the ID token.
type store struct {
	*storage.Storage
	users map[string]user

	mu          sync.Mutex
	tokenScopes map[string][]string // access token ID -> scopes, for the userinfo endpoint
}

// client makes the example's web client put user claims into the ID token even
// though an access token is issued too (the OIDC default leaves them to userinfo),
// and accepts the `groups` scope (unknown scopes are silently dropped otherwise).
type client struct{ op.Client }

func (client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c client) IsScopeAllowed(s string) bool       { return s == groupsScope || c.Client.IsScopeAllowed(s) }

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return client{c}, nil
}

// addClaims completes what the example's setUserinfo filled in for these scopes.
func (s *store) addClaims(info *oidc.UserInfo, subject string, scopes []string) {
	u, ok := s.users[subject]
	if !ok {
		return
	}
	if info.Name != "" { // the profile scope was granted
		info.Name = u.Name
	}
	if info.Email != "" && !bool(info.EmailVerified) {
		// the library's struct field is omitempty, so false would vanish; say it explicitly
		info.AppendClaims("email_verified", false)
	}
	for _, sc := range scopes {
		if sc == groupsScope {
			info.AppendClaims("groups", append([]string{}, u.Groups...))
		}
	}
}

// SetUserinfoFromRequest fills the ID token's user claims.
func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	s.addClaims(info, req.GetSubject(), scopes)
	return nil
}

// SetUserinfoFromToken fills the userinfo endpoint's answer.
func (s *store) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.mu.Lock()
	scopes := s.tokenScopes[tokenID]
	s.mu.Unlock()
	s.addClaims(info, info.Subject, scopes)
	return nil
}

// The two token creators only record the scopes (the example keeps them private).
func (s *store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, req)
	s.remember(id, req.GetScopes())
	return id, exp, err
}

func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, refresh string) (string, string, time.Time, error) {
	id, newRefresh, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, refresh)
	s.remember(id, req.GetScopes())
	return id, newRefresh, exp, err
}

func (s *store) remember(tokenID string, scopes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenScopes[tokenID] = scopes
}

// ClientCredentials disables the example's built-in service user (sid1/verysecret).
func (s *store) ClientCredentials(context.Context, string, string) (op.Client, error) {
	return nil, fmt.Errorf("client credentials grant is disabled")
}

func load(path string) (*store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cfg config
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields() // a typo in a test fixture should fail loudly
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	clients := map[string]*storage.Client{}
	for _, c := range cfg.Clients {
		if c.ID == "" || c.Secret == "" || len(c.RedirectURIs) == 0 {
			return nil, fmt.Errorf("%s: client %q needs id, secret and redirect_uris", path, c.ID)
		}
		// Confidential web client: client_secret_basic (client_secret_post is also
		// accepted, see AuthMethodPost in exampleop); PKCE is optional but checked when sent.
		clients[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
	}
	users, byName := userStore{}, map[string]user{}
	for _, u := range cfg.Users {
		if u.Username == "" || u.Password == "" {
			return nil, fmt.Errorf("%s: every user needs username and password", path)
		}
		first, last := u.Name, ""
		if i := strings.LastIndex(u.Name, " "); i > 0 {
			first, last = u.Name[:i], u.Name[i+1:]
		}
		users[u.Username] = &storage.User{
			ID: u.Username, Username: u.Username, Password: u.Password,
			FirstName: first, LastName: last, // given_name / family_name
			Email: u.Email, EmailVerified: u.EmailVerified == nil || *u.EmailVerified,
			PreferredLanguage: language.English, // the zero tag would emit "locale": null
		}
		byName[u.Username] = u
	}
	return &store{
		Storage:     storage.NewStorageWithClients(users, clients),
		users:       byName,
		tokenScopes: map[string][]string{},
	}, nil
}

func main() {
	listen := flag.String("listen", "", "address to listen on, e.g. 127.0.0.1:5556")
	port := flag.Int("port", 0, "shorthand for --listen 127.0.0.1:PORT")
	issuer := flag.String("issuer", "", "issuer URL (default http://<listen>)")
	cfgPath := flag.String("config", "", "JSON file with clients and users")
	flag.Parse()
	if *listen == "" && *port != 0 {
		*listen = fmt.Sprintf("127.0.0.1:%d", *port)
	}
	if *listen == "" || *cfgPath == "" {
		fmt.Fprintln(os.Stderr, "usage: oidc-provider --listen HOST:PORT --config FILE [--issuer URL]")
		os.Exit(2)
	}
	if *issuer == "" {
		*issuer = "http://" + *listen
	}
	st, err := load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oidc-provider:", err)
		os.Exit(1)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// The example router: discovery, /auth, /oauth/token, /keys, /userinfo, ... and the
	// login page under /login/username. The issuer is static: every URL it hands out
	// (discovery, redirects) uses it, whatever Host the request came with.
	router := exampleop.SetupServer(*issuer, st, logger, false)

	ln, err := net.Listen("tcp", *listen) // listen first so "ready" means connectable
	if err != nil {
		fmt.Fprintln(os.Stderr, "oidc-provider:", err)
		os.Exit(1)
	}
	fmt.Printf("oidc-provider ready: issuer %s listening on %s\n", *issuer, ln.Addr())
	if err := http.Serve(ln, router); err != nil {
		fmt.Fprintln(os.Stderr, "oidc-provider:", err)
		os.Exit(1)
	}
}
